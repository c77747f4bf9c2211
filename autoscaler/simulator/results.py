"""What a run reports: the `infleet simulate --json` object and the `--compare` table."""

from __future__ import annotations

from typing import Any

from infleet.autoscaler.simulator.run import FaultOutcome, RunOutcome
from infleet.autoscaler.view import POOLS


def _r(x: float, digits: int = 4) -> float:
    return round(float(x), digits)


def summary(run: RunOutcome) -> dict[str, Any]:
    """The JSON contract: `scenario`, `policy`, `requests`, `slo_attainment`,
    `ttft_p95_s`, `cost`, `gpu_hours` {dedicated, spot}, `spot_interruptions`,
    `requests_failed`, `faults` (one entry per `--fault`), and more. Deterministic for a
    seed (no wall-clock values)."""
    s, rec, fleet = run.scenario, run.rec, run.fleet
    completed = rec.ttft.total
    judged = completed + rec.failures
    gpu_hours = {pool: fleet.gpu_seconds[pool] / 3600.0 for pool in POOLS}
    prices = {"dedicated": s.price_dedicated, "spot": s.price_spot}
    cost_by_pool = {pool: gpu_hours[pool] * prices[pool] for pool in POOLS}
    return {
        "scenario": s.name,
        "policy": run.policy,
        "seed": run.seed,
        "duration_h": _r(s.duration_s / 3600.0),
        "requests": fleet.arrived,
        "requests_completed": round(completed),
        "requests_failed": rec.failures,
        "requests_retried": fleet.retried,
        "slo_ttft_s": s.spec.slo.ttft_p95_seconds,
        "slo_attainment": _r(rec.attained / judged if judged else 1.0, 5),
        "ttft_p50_s": _r(rec.ttft.quantile(0.50)),
        "ttft_p95_s": _r(rec.ttft.quantile(0.95)),
        "ttft_p99_s": _r(rec.ttft.quantile(0.99)),
        "e2e_p50_s": _r(rec.e2e.quantile(0.50)),
        "e2e_p95_s": _r(rec.e2e.quantile(0.95)),
        "e2e_p99_s": _r(rec.e2e.quantile(0.99)),
        "cost": _r(sum(cost_by_pool.values()), 2),
        "cost_by_pool": {k: _r(v, 2) for k, v in cost_by_pool.items()},
        "prices_per_gpu_hour": prices,
        "gpu_hours": {k: _r(v, 3) for k, v in gpu_hours.items()},
        "replicas_mean": _r(run.replica_seconds / s.duration_s if s.duration_s else 0.0, 2),
        "replicas_peak": run.peak_replicas,
        "spot_interruptions": fleet.interruptions,
        "engine_preemptions": run.engine_preemptions,
        "faults": [fault_summary(f) for f in run.faults],
    }


def fault_summary(outcome: FaultOutcome) -> dict[str, Any]:
    """One `--fault`: its spec, and how the fleet fared in its window."""
    f, (_, end, attained, judged) = outcome.fault, outcome.window
    low = outcome.desired_min
    return {
        "fault": f.text(),
        "window_s": [f.start_s, end],
        "requests": round(judged),
        "slo_attainment": _r(attained / judged if judged else 1.0, 5),
        "replicas_desired_at_start": outcome.desired_at_start,
        "replicas_desired_min": low,
        "scaled_down": low is not None and low < outcome.desired_at_start,
    }


COLUMNS = (
    ("policy", "policy", "{}"),
    ("SLO attain.", "slo_attainment", "{:.4f}"),
    ("TTFT p95 s", "ttft_p95_s", "{:.2f}"),
    ("cost $", "cost", "{:,.0f}"),
    ("vs static", "_vs_static", "{:.0%}"),
    ("GPU-h ded.", "_ded", "{:,.0f}"),
    ("GPU-h spot", "_spot", "{:,.0f}"),
    ("replicas mean/peak", "_replicas", "{}"),
    ("spot int.", "spot_interruptions", "{}"),
    ("retried", "requests_retried", "{}"),
    ("failed", "requests_failed", "{}"),
)


def compare_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table, one row per policy, cost relative to static-peak."""
    static = next((r["cost"] for r in rows if r["policy"] == "static-peak"), None)
    cells = []
    for r in rows:
        extra = {
            "_vs_static": r["cost"] / static if static else float("nan"),
            "_ded": r["gpu_hours"]["dedicated"],
            "_spot": r["gpu_hours"]["spot"],
            "_replicas": f"{r['replicas_mean']:.1f}/{r['replicas_peak']}",
        }
        cells.append([fmt.format({**r, **extra}[key]) for _, key, fmt in COLUMNS])
    header = [title for title, _, _ in COLUMNS]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |",
        "| " + " | ".join("-" * w for w in widths) + " |",
    ]
    for c in cells:
        lines.append("| " + " | ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)) + " |")
    first = rows[0] if rows else {}
    title = f"scenario {first.get('scenario')}, seed {first.get('seed')}, "
    title += f"{first.get('requests', 0):,} requests, TTFT target {first.get('slo_ttft_s')} s"
    return title + "\n\n" + "\n".join(lines)
