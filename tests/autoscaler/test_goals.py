"""Issue 12's goals, in CI: every built-in scenario once, our policy only, at a coarser
tick (3 s), against the best non-oracle baseline's figure committed from the benchmark
(bench/results/autoscaler_matrix.json, `python -m bench.autoscaler_matrix`, every
scenario x policy x 3 seeds, docs/autoscaling.md#results). The full matrix is the
benchmark; this keeps the code honest between its runs."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest

from infleet.autoscaler.simulator.arrivals import RateArrivals, TokenShape, diurnal_rate
from infleet.autoscaler.simulator.faults import parse_fault
from infleet.autoscaler.simulator.results import summary
from infleet.autoscaler.simulator.run import simulate
from infleet.autoscaler.simulator.scenarios import SCENARIOS, get_scenario

MATRIX = json.loads(
    (
        Path(__file__).resolve().parents[2] / "bench" / "results" / "autoscaler_matrix.json"
    ).read_text()
)
FIGURES = MATRIX["goal_figures"]
TABLE = {(c["scenario"], c["policy"]): c for c in MATRIX["table"]}
# The best baseline's figure, given where it did not reach what its scenario allows.
MARGIN = 0.005


def coarse(name: str, **changes):
    return dataclasses.replace(get_scenario(name), tick_s=3.0, **changes)


def test_the_committed_figures_cover_every_built_in_scenario():
    assert set(FIGURES) == set(SCENARIOS)
    assert MATRIX["seeds"] == [1, 2, 3]


# Where the benchmark shows ours short of the goal (docs/autoscaling.md#goals): the test
# is expected to fail there, strictly, so that meeting the goal shows up as a failure to
# update this table.
NOT_MET = {
    "bursty": "3x bursts shorter than a replica's start; the best baseline sits at maxReplicas",
    "step-10x": "hpa-utilization sits at maxReplicas before the step; ours is 3 minutes late",
    "long-prompt-shift": "hpa-utilization sits at maxReplicas; ours is late at the 8k shift",
    "trace-1x": "3x spikes on 2 replicas; the concurrency HPA runs 2.6x ours",
    "trace-4x": "spikes of 45 s on a fleet of 2-9; the concurrency HPA runs 4x ours",
}


def goal_cases():
    for name in SCENARIOS:
        why = NOT_MET.get(name)
        marks = [pytest.mark.xfail(strict=True, reason=why)] if why else []
        yield pytest.param(name, marks=marks, id=name)


@pytest.fixture(scope="module")
def ours():
    """Our policy on every scenario, once, seed 1, 3 s ticks (run on demand)."""
    runs: dict[str, dict] = {}

    def run(name: str) -> dict:
        if name not in runs:
            runs[name] = summary(simulate(coarse(name), "infleet", 1))
        return runs[name]

    return run


@pytest.mark.slow
@pytest.mark.parametrize("name", list(goal_cases()))
def test_ours_is_no_worse_than_the_best_baseline(name, ours):
    goal, result = FIGURES[name], ours(name)
    assert result["slo_attainment"] >= goal["best_baseline_attainment"] - MARGIN, (goal, result)
    if goal["any_non_oracle_reached_0_99"]:
        assert result["slo_attainment"] >= 0.99, (goal, result)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_ours_keeps_its_committed_figure(name, ours):
    """Met or not, ours does not fall below its own benchmark figure (3 seeds, 2 s ticks;
    a 3 s tick costs up to a point of attainment, a trace replay's few minutes more)."""
    committed = TABLE[name, "infleet"]["attainment_worst"]
    slack = 0.05 if name.startswith("trace") else 0.01
    assert ours(name)["slo_attainment"] >= committed - slack, (name, committed)


@pytest.mark.slow
def test_a_metrics_blackout_at_the_diurnal_peak():
    """30 minutes without metrics around the 14:00 peak: no scale-down, and at least 95%
    of the requests that arrive meanwhile within the TTFT target."""
    blackout = parse_fault("metrics-blackout:49500:1800")
    run = simulate(coarse("diurnal", duration_s=52_000.0, faults=(blackout,)), "infleet", 1)
    (during,) = summary(run)["faults"]
    assert not during["scaled_down"] and during["slo_attainment"] >= 0.95, during


@pytest.mark.slow
def test_on_diurnal_ours_costs_at_most_40_percent_of_static_peak(ours):
    static = TABLE["diurnal", "static-peak"]
    assert ours("diurnal")["cost"] <= 0.40 * static["cost"], ours("diurnal")["cost"]


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="not met: infleet-dedicated ran 8.4% fewer GPU-hours than the tuned concurrency "
    "HPA on diurnal (1,020 vs 1,113, both at 1.0000), not 10% (docs/autoscaling.md#goals)",
)
def test_on_diurnal_our_sizing_alone_saves_10_percent_over_the_concurrency_hpa():
    """infleet-dedicated (no spot) at least 10% fewer GPU-hours than the tuned
    concurrency HPA, at equal or better attainment (the HPA's committed figures)."""
    hpa = TABLE["diurnal", "hpa-concurrency"]
    dedicated = summary(simulate(coarse("diurnal"), "infleet-dedicated", 1))
    hours = sum(dedicated["gpu_hours"].values())
    assert dedicated["slo_attainment"] >= hpa["attainment_mean"] - MARGIN
    assert hours <= 0.9 * (hpa["gpu_hours_dedicated"] + hpa["gpu_hours_spot"]), hours


@pytest.mark.slow
def test_a_day_of_a_fifty_replica_fleet_in_under_a_minute_of_one_core():
    """Six hours of 50 replicas serving 600 req/s (12 each: the load static-peak sizes
    for) in under 15 s of CPU: a day in under a minute."""
    base = get_scenario("steady")
    scenario = dataclasses.replace(
        base,
        duration_s=6 * 3600.0,
        warmup_s=0.0,
        static_replicas=50,
        arrivals=RateArrivals(diurnal_rate(600.0, peak_to_trough=1.0), TokenShape()),
        market=dataclasses.replace(base.market, interruptions_per_hour=0.0),
    )
    started = time.process_time()
    run = simulate(scenario, "static-peak", 1)
    cpu = time.process_time() - started
    assert run.peak_replicas == 50 and run.fleet.arrived > 12_000_000
    assert cpu < 15.0, cpu
