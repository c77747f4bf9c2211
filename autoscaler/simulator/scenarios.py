"""Built-in scenarios: one InferenceService, its load, its spot market, its prices.

Every scenario serves Llama-3.1-8B-shaped traffic on H100-shaped replicas. The spec is
what a tenant would write (validated by the API): 2..60 replicas at 8 requests of queue
per replica, 2 dedicated as the baseline, spot up to 60, p95 TTFT 1 s, at most 0.2 spot
preemptions per replica-hour. Prices are illustrative list prices (dedicated $5.00, spot
$2.00 per GPU-hour); pass your own on the command line.

Two sets, disjoint: `SCENARIOS` is the evaluation (docs/autoscaling.md's table, the goal
test), `TUNING_SCENARIOS` is where every policy's parameters are chosen
(bench/tune_autoscalers.py). No policy is tuned on a scenario it is scored on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from infleet.autoscaler.simulator.arrivals import (
    MixedArrivals,
    PhasedArrivals,
    RateArrivals,
    TokenShape,
    TraceArrivals,
    diurnal_rate,
)
from infleet.autoscaler.simulator.scenario import (
    HOUR,
    MarketSpec,
    Scenario,
    bursts_scenario,
    default_spec,
    rate_scenario,
    with_trace,
)

SYNTHETIC_TRACE = Path(__file__).with_name("synthetic_trace.csv")


# -- the evaluation set ----------------------------------------------------------------
def steady() -> Scenario:
    return rate_scenario("steady", "6 h of Poisson load at 240 req/s", 6, diurnal_rate(240.0, 1.0))


DIURNAL_BURSTS = (
    (3.0 * HOUR, 600.0, 2.0),
    (9.5 * HOUR, 900.0, 1.5),
    (14.0 * HOUR, 600.0, 1.3),
    (19.0 * HOUR, 1200.0, 1.4),
)


def diurnal() -> Scenario:
    return rate_scenario(
        "diurnal",
        "24 h, 480 req/s peak at 14:00, 4:1 peak to trough, four bursts of 1.3-2x",
        24,
        diurnal_rate(480.0, peak_to_trough=4.0, bursts=DIURNAL_BURSTS),
    )


def bursty(seed: int = 7) -> Scenario:
    """A flat base with sudden 3x bursts of 5 minutes at random (Poisson, one per 45
    minutes on average); overlapping bursts multiply (up to 9x here)."""
    return bursts_scenario(
        "bursty", "6 h at 150 req/s with 3x bursts of 5 min at random, overlapping at times",
        6, 150.0, seed, 2700.0, 300.0, 3.0,
    )  # fmt: skip


def spot_storm() -> Scenario:
    return rate_scenario(
        "spot-storm",
        "6 h at 360 req/s; from hour 1 to hour 5 spot nodes are reclaimed at 50% per "
        "replica-hour: 0.1 one by one, 0.4 in waves (one an hour on average, each taking "
        "40% of spot nodes); reclaimed capacity is gone ~30 min; the zone has 32 spot GPUs",
        6,
        diurnal_rate(360.0, peak_to_trough=1.0),
        market=MarketSpec(
            storm_start_s=1 * HOUR,
            storm_end_s=5 * HOUR,
            storm_interruptions_per_hour=0.1,
            waves_per_hour=1.0,
            wave_fraction=0.4,
            reclaim_mean_s=1800.0,
            capacity=32,
        ),
    )


def step_10x() -> Scenario:
    return rate_scenario(
        "step-10x", "3 h: 40 req/s, then 400 req/s from hour 1 on (a 10x step)", 3,
        lambda t: 40.0 if t < HOUR else 400.0,
    )  # fmt: skip


def long_prompt_shift() -> Scenario:
    """The finding that taught the policy to key capacity by shape."""
    rate = diurnal_rate(60.0, peak_to_trough=1.0)
    phases = [(0.0, 1024.0), (HOUR, 8192.0), (2 * HOUR, 1024.0)]
    arrivals = PhasedArrivals([(t, RateArrivals(rate, TokenShape(p, 256.0))) for t, p in phases])
    return Scenario(
        "long-prompt-shift",
        "4 h at 60 req/s: 1k-token prompts, 8k from hour 1 to hour 2, then 1k again",
        4 * HOUR, arrivals, 60.0, default_spec(), static_replicas=STATIC_8K_REPLICAS,
    )  # fmt: skip


def multi_tenant() -> Scenario:
    """Two tenants of different shapes behind one service: chat traffic on a 2-hour
    cycle, and a retrieval job's long prompts for 30 minutes of every hour."""
    chat = diurnal_rate(200.0, peak_to_trough=2.5, period_s=2 * HOUR, peak_at_s=HOUR)

    def rag(t: float) -> float:
        return 12.0 if (t % HOUR) < 1800.0 else 0.0

    arrivals = MixedArrivals(
        [RateArrivals(chat, TokenShape(512.0, 384.0)), RateArrivals(rag, TokenShape(6144.0, 64.0))]
    )
    return Scenario(
        "multi-tenant",
        "4 h: chat (512+384 tokens) 80-200 req/s on a 2 h cycle, plus a retrieval tenant "
        "(6k+64 tokens) at 12 req/s for 30 min of every hour",
        4 * HOUR, arrivals, 212.0, default_spec(), static_replicas=STATIC_MULTI_TENANT_REPLICAS,
    )  # fmt: skip


def trace_replay(speedup: float) -> Callable[[], Scenario]:
    def build() -> Scenario:
        trace = TraceArrivals.from_csv(SYNTHETIC_TRACE, speedup)
        return dataclasses.replace(
            with_trace(steady(), trace),
            name=f"trace-{speedup:g}x",
            description=f"the shipped synthetic trace ({len(trace.times):,} requests, the "
            f"Azure trace's columns) replayed {speedup:g}x faster",
        )

    return build


# Static-peak sizes where the shape changes (measured: the fewest static replicas
# holding the TTFT target through the scenario's hardest hour, seed 1).
STATIC_8K_REPLICAS = 30
STATIC_MULTI_TENANT_REPLICAS = 30

SCENARIOS: dict[str, Callable[[], Scenario]] = {
    "steady": steady,
    "diurnal": diurnal,
    "bursty": bursty,
    "spot-storm": spot_storm,
    "step-10x": step_10x,
    "long-prompt-shift": long_prompt_shift,
    "multi-tenant": multi_tenant,
    "trace-1x": trace_replay(1.0),
    "trace-4x": trace_replay(4.0),
    "trace-16x": trace_replay(16.0),
}


# -- the tuning set (never scored in the evaluation) ------------------------------------
def tune_ramp() -> Scenario:
    def rate(t: float) -> float:  # 60 -> 360 req/s over 2 h, and back
        return 60.0 + 300.0 * (1.0 - abs(t - 2 * HOUR) / (2 * HOUR))

    return rate_scenario("tune-ramp", "4 h: a ramp from 60 to 360 req/s and back", 4, rate)


def tune_bursts(seed: int = 11) -> Scenario:
    """Like `bursty`'s kind of traffic, not its numbers: 2.5x bursts of 6 minutes at
    random, one per 40 minutes on average, on 120 req/s."""
    return bursts_scenario(
        "tune-bursts", "4 h at 120 req/s with 2.5x bursts of 6 min at random, ~every 40 min",
        4, 120.0, seed, 2400.0, 360.0, 2.5,
    )  # fmt: skip


def tune_shape() -> Scenario:
    return rate_scenario(
        "tune-shape", "3 h at 150 req/s of 2k-token prompts and 128-token outputs", 3,
        diurnal_rate(150.0, peak_to_trough=1.0), TokenShape(2048.0, 128.0),
    )  # fmt: skip


def tune_day() -> Scenario:
    rate = diurnal_rate(300.0, peak_to_trough=5.0, period_s=6 * HOUR, peak_at_s=3 * HOUR)
    return rate_scenario("tune-day", "6 h: a day compressed, 60 to 300 req/s", 6, rate)


TUNING_SCENARIOS: dict[str, Callable[[], Scenario]] = {
    "tune-ramp": tune_ramp,
    "tune-bursts": tune_bursts,
    "tune-shape": tune_shape,
    "tune-day": tune_day,
}


def get_scenario(name: str) -> Scenario:
    build = SCENARIOS.get(name) or TUNING_SCENARIOS.get(name)
    if build is None:
        known = ", ".join([*SCENARIOS, *TUNING_SCENARIOS])
        raise ValueError(f"--scenario {name!r} is not one of: {known}")
    return build()
