"""Tunes every policy's parameters the same way, on scenarios it is not scored on.

    .venv/bin/python -m bench.tune_autoscalers [--jobs 2] [--seeds 1]

For each policy, every point of its grid runs every tuning scenario
(`infleet.autoscaler.simulator.scenarios.TUNING_SCENARIOS`, disjoint from the evaluation
set). One objective for all: the fewest GPU-hours (dedicated + spot, summed over the
tuning scenarios) among the points that reach, on every tuning scenario, 0.99 SLO
attainment, or (where no point of the policy's grid reaches 0.99 there) the best the
grid reaches there less 0.005. The chosen points are written to
autoscaler/tuned.py (which `Tuning`'s defaults and the baselines read) and every point's
figures to bench/results/tuning.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import Any

from bench.sim_runs import run_all
from infleet.autoscaler.simulator.scenarios import TUNING_SCENARIOS
from infleet.autoscaler.tuned import TUNED

ROOT = Path(__file__).resolve().parent.parent
TUNED_PY = ROOT / "autoscaler" / "tuned.py"
RESULTS = ROOT / "bench" / "results" / "tuning.json"
OBJECTIVE = (
    "fewest GPU-hours subject to SLO attainment >= 0.99 on every tuning scenario (where no "
    "point of the grid reaches 0.99: >= the grid's best there - 0.005)"
)
FLOOR, SLACK = 0.99, 0.005

GRIDS: dict[str, dict[str, list[float]]] = {
    "hpa-utilization": {"target": [0.5, 0.6, 0.7, 0.8, 0.9]},
    "hpa-concurrency": {"target": [8, 16, 24, 32, 48, 64, 96, 128]},
    "keda-queue": {"threshold": [1, 2, 4, 8, 16, 32]},
    "knative-kpa": {"target": [8, 16, 24, 32, 48, 64, 96, 128]},
    "infleet": {
        "target_utilization": [0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7, 0.8],
        "panic_threshold": [1.5, 2.0],
        "burst_hold_gaps": [1.0, 2.0],
    },
}


def points(grid: dict[str, list[float]]) -> list[dict[str, float]]:
    keys = list(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*grid.values())]


def choose(rows: list[dict[str, Any]]) -> tuple[dict[str, float], dict[str, Any]]:
    """The point the objective picks, and its figures (means over seeds)."""
    cells: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        cells.setdefault((json.dumps(row["params"], sort_keys=True), row["scenario"]), []).append(
            row
        )
    attained = {k: sum(r["slo_attainment"] for r in v) / len(v) for k, v in cells.items()}
    hours = {k: sum(sum(r["gpu_hours"].values()) for r in v) / len(v) for k, v in cells.items()}
    scenarios = {s for _, s in cells}
    best = {s: max(a for (_, s2), a in attained.items() if s2 == s) for s in scenarios}
    floor = {s: FLOOR if best[s] >= FLOOR else best[s] - SLACK for s in scenarios}
    scored = []
    for point in {p for p, _ in cells}:
        short = sum(max(0.0, floor[s] - attained[point, s]) for s in scenarios)
        total = sum(hours[point, s] for s in scenarios)
        scored.append((short, total, point))
    short, total, point = min(scored)
    figures = {
        "gpu_hours": round(total, 1),
        "attainment": {s: round(attained[point, s], 4) for s in sorted(scenarios)},
        "floors": {s: round(floor[s], 4) for s in sorted(scenarios)},
        "meets_floors": short == 0.0,
    }
    return json.loads(point), figures


def write_tuned(chosen: dict[str, dict[str, float]]) -> None:
    lines = [
        '"""Parameters chosen on the tuning scenarios (generated: do not edit by hand).',
        "",
        "Written by `python -m bench.tune_autoscalers`; the scenarios, grids and objective are in",
        "that script and docs/autoscaling.md#tuning. Every policy, ours included, is tuned the",
        "same way on scenarios that are not in the evaluation table.",
        '"""',
        "",
        "TUNED: dict[str, dict[str, float]] = {",
        *(f"    {name!r}: {params!r}," for name, params in chosen.items()),
        "}",
        "",
    ]
    TUNED_PY.write_text("\n".join(lines).replace("'", '"'))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.tune_autoscalers")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--seeds", type=int, nargs="+", default=[1])
    p.add_argument("--policies", nargs="+", default=list(GRIDS))
    opts = p.parse_args(argv)
    runs = [
        (scenario, policy, seed, 2.0, (), point)
        for policy in opts.policies
        for point in points(GRIDS[policy])
        for scenario in TUNING_SCENARIOS
        for seed in opts.seeds
    ]
    rows = list(run_all(runs, opts.jobs))
    # Policies not tuned this time keep their earlier runs and choice.
    before = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"runs": [], "chosen": {}}
    kept = [r for r in before["runs"] if r["policy"] not in opts.policies]
    chosen: dict[str, dict[str, float]] = {}
    report = {"objective": OBJECTIVE, "scenarios": list(TUNING_SCENARIOS), "seeds": opts.seeds,
              "grids": GRIDS, "chosen": {k: v for k, v in before["chosen"].items()
                                         if k not in opts.policies},
              "runs": kept + rows}  # fmt: skip
    for policy in opts.policies:
        params, figures = choose([r for r in rows if r["policy"] == policy])
        chosen[policy] = params
        report["chosen"][policy] = {"params": params, **figures}
        print(f"{policy}: {params} ({figures})")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=1) + "\n")
    write_tuned({**TUNED, **chosen})
    print(f"wrote {TUNED_PY.relative_to(ROOT)} and {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
