"""Simulator runs in parallel worker processes, for the tuning and the benchmark matrix.

A run is named, not pickled: (scenario, policy, seed, tick, faults, parameters) goes to a
worker, which builds the scenario and returns `infleet simulate --json`'s object.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

from infleet.autoscaler.simulator.faults import parse_fault
from infleet.autoscaler.simulator.results import summary
from infleet.autoscaler.simulator.run import simulate
from infleet.autoscaler.simulator.scenarios import get_scenario

Run = tuple[str, str, int, float, tuple[str, ...], dict[str, float]]


def run_one(run: Run) -> dict[str, Any]:
    scenario_name, policy, seed, tick, faults, params = run
    scenario = get_scenario(scenario_name)
    changes: dict[str, Any] = {"tick_s": tick}
    if faults:
        changes["faults"] = tuple(parse_fault(f) for f in faults)
    scenario = dataclasses.replace(scenario, **changes)
    started = time.process_time()
    row = summary(simulate(scenario, policy, seed, tuned=params or None))
    row["cpu_s"] = round(time.process_time() - started, 2)
    row["params"] = params
    row["tick_s"] = tick
    return row


def run_all(runs: Iterable[Run], jobs: int) -> Iterator[dict[str, Any]]:
    """Every run's row, as they finish (progress on stderr)."""
    runs = list(runs)
    with multiprocessing.get_context("fork").Pool(jobs) as pool:
        for i, row in enumerate(pool.imap_unordered(run_one, runs), start=1):
            print(
                f"[{i}/{len(runs)}] {row['scenario']} / {row['policy']} seed {row['seed']} "
                f"{row['params'] or ''}: {row['slo_attainment']:.4f}, "
                f"{sum(row['gpu_hours'].values()):.1f} GPU-h ({row['cpu_s']:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
            yield row
