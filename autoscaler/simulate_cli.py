"""`infleet simulate`: one InferenceService's fleet under an autoscaling policy.

    infleet simulate --scenario diurnal --policy infleet --seed 1 --json
    infleet simulate --scenario spot-storm --compare
    infleet simulate --trace azure_conv.csv --policy infleet --plot run.png
    infleet simulate --scenario steady --fault metrics-blackout:7200:1800 --cold-start 300

Needs only the standard library (matplotlib for --plot). Results depend on the seed
alone: the same command prints the same JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from infleet.autoscaler.simulator.arrivals import TraceArrivals
from infleet.autoscaler.simulator.calibration import from_bench
from infleet.autoscaler.simulator.faults import KINDS, parse_fault
from infleet.autoscaler.simulator.plot import PlotUnavailable, plot_run, require_matplotlib
from infleet.autoscaler.simulator.policies import POLICY_NAMES
from infleet.autoscaler.simulator.results import compare_table, summary
from infleet.autoscaler.simulator.run import simulate
from infleet.autoscaler.simulator.scenario import Scenario, with_trace
from infleet.autoscaler.simulator.scenarios import SCENARIOS, TUNING_SCENARIOS, get_scenario


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="infleet simulate",
        description="Simulate one InferenceService's fleet under an autoscaling policy.",
    )
    names = ", ".join([*SCENARIOS, *TUNING_SCENARIOS])
    p.add_argument("--scenario", default="diurnal", help=f"one of: {names}")
    p.add_argument("--policy", default="infleet", help=f"one of: {', '.join(POLICY_NAMES)}")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--compare", action="store_true", help="run every policy, print a table")
    p.add_argument("--json", action="store_true", help="print JSON (a list with --compare)")
    p.add_argument("--plot", metavar="PNG", help="write load/replicas/latency over time")
    p.add_argument("--trace", metavar="CSV", help="replay timestamp,input,output rows")
    p.add_argument("--trace-speedup", type=float, default=1.0, metavar="X")
    p.add_argument("--calibration", metavar="JSON", help="fit replicas to `infleet bench` output")
    p.add_argument("--hours", type=float, help="shorten or lengthen the scenario")
    p.add_argument("--price-dedicated", type=float, metavar="USD", help="per GPU-hour")
    p.add_argument("--price-spot", type=float, metavar="USD", help="per GPU-hour")
    p.add_argument("--tick", type=float, metavar="S", help="simulation step (default 2 s)")
    p.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KIND:ARGS",
        help="inject a fault (repeatable): "
        + "; ".join(":".join([k, *args]) for k, args in KINDS.items()),
    )
    p.add_argument(
        "--cold-start",
        type=float,
        metavar="S",
        help="seconds from a pod's scheduling to readiness (engine start and model load; "
        "default 120)",
    )
    return p


def _scenario(opts: argparse.Namespace) -> Scenario:
    scenario = get_scenario(opts.scenario)
    if opts.trace:
        if opts.trace_speedup <= 0:
            raise ValueError("--trace-speedup must be > 0")
        scenario = with_trace(scenario, TraceArrivals.from_csv(opts.trace, opts.trace_speedup))
    changes: dict = {}
    if opts.calibration:
        changes["model"] = from_bench(opts.calibration, scenario.model)
    if opts.hours is not None:
        if opts.hours <= 0:
            raise ValueError("--hours must be > 0")
        changes["duration_s"] = opts.hours * 3600.0
    for flag, key in (("price_dedicated", "price_dedicated"), ("price_spot", "price_spot")):
        value = getattr(opts, flag)
        if value is not None:
            if value < 0:
                raise ValueError(f"--{flag.replace('_', '-')} must be >= 0")
            changes[key] = value
    if opts.tick is not None:
        if not 0.25 <= opts.tick <= 3.0:
            raise ValueError("--tick must be between 0.25 and 3 seconds")
        changes["tick_s"] = opts.tick
    if opts.fault:
        changes["faults"] = (*scenario.faults, *(parse_fault(f) for f in opts.fault))
    if opts.cold_start is not None:
        if not 0 < opts.cold_start <= 7200:
            raise ValueError("--cold-start must be between 0 and 7200 seconds")
        changes["timings"] = dataclasses.replace(scenario.timings, startup_s=opts.cold_start)
    return dataclasses.replace(scenario, **changes)


def main(argv: list[str] | None = None) -> int:
    opts = build_parser().parse_args(argv)
    try:
        if not opts.compare and opts.policy not in POLICY_NAMES:
            raise ValueError(f"--policy {opts.policy!r} is not one of: {', '.join(POLICY_NAMES)}")
        if opts.plot:
            require_matplotlib()  # fail before hours of simulation, not after
        scenario = _scenario(opts)
        policies = list(POLICY_NAMES) if opts.compare else [opts.policy]
        rows, runs = [], []
        for name in policies:
            started = time.perf_counter()
            run = simulate(scenario, name, opts.seed)
            wall = time.perf_counter() - started
            rows.append(summary(run))
            runs.append(run)
            print(f"{scenario.name} / {name}: simulated in {wall:.1f} s", file=sys.stderr)
        if opts.plot:
            for run in runs:
                path = Path(opts.plot)
                if opts.compare:
                    path = path.with_name(f"{path.stem}-{run.policy}{path.suffix or '.png'}")
                print(f"wrote {plot_run(run, path)}", file=sys.stderr)
    except (ValueError, PlotUnavailable) as err:
        print(f"infleet simulate: {err}", file=sys.stderr)
        return 2
    if opts.json:
        print(json.dumps(rows if opts.compare else rows[0], indent=None, sort_keys=False))
    elif opts.compare:
        print(compare_table(rows))
    else:
        for key, value in rows[0].items():
            print(f"{key:>20}: {value}")
    return 0
