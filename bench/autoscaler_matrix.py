"""The autoscaling benchmark: every evaluation scenario x every policy x seeds.

    .venv/bin/python -m bench.autoscaler_matrix [--jobs 2] [--seeds 1 2 3]

Prints docs/autoscaling.md's results table (mean and worst SLO attainment over the seeds,
mean GPU-hours per pool and cost) and the goals, and writes every run to
bench/results/autoscaler_matrix.json, whose `goal_figures` the CI goal test reads (the
best non-oracle baseline's mean attainment per scenario). Also runs `diurnal` with a
30-minute metrics blackout at its peak for our policies.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.sim_runs import run_all
from infleet.autoscaler.simulator.policies import ORACLES, POLICY_NAMES
from infleet.autoscaler.simulator.scenarios import SCENARIOS

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "autoscaler_matrix.json"
OURS = ("infleet", "infleet-dedicated", "spot-only")
BLACKOUT = "metrics-blackout:49500:1800"  # 13:45 to 14:15, around the 14:00 peak


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def cells(rows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Per (scenario, policy): mean and worst attainment, mean GPU-hours and cost."""
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        if not row["faults"]:
            grouped.setdefault((row["scenario"], row["policy"]), []).append(row)
    return {
        key: {
            "attainment_mean": round(_mean([r["slo_attainment"] for r in runs]), 5),
            "attainment_worst": min(r["slo_attainment"] for r in runs),
            "gpu_hours_dedicated": round(_mean([r["gpu_hours"]["dedicated"] for r in runs]), 1),
            "gpu_hours_spot": round(_mean([r["gpu_hours"]["spot"] for r in runs]), 1),
            "cost": round(_mean([r["cost"] for r in runs]), 1),
            "failed": round(_mean([r["requests_failed"] for r in runs])),
            "seeds": len(runs),
        }
        for key, runs in grouped.items()
    }


def goal_figures(table: dict[tuple[str, str], dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per scenario: the best non-oracle baseline and whether any non-oracle policy (ours
    included) reached 0.99: what the goal test holds ours to."""
    out = {}
    for scenario in SCENARIOS:
        base = {p: c for (s, p), c in table.items() if s == scenario and p not in (*ORACLES, *OURS)}
        if not base:
            continue
        best = max(base, key=lambda p: base[p]["attainment_mean"])
        anyone = [
            c["attainment_mean"]
            for (s, p), c in table.items()
            if s == scenario and p not in ORACLES
        ]
        out[scenario] = {
            "best_baseline": best,
            "best_baseline_attainment": base[best]["attainment_mean"],
            "any_non_oracle_reached_0_99": max(anyone) >= 0.99,
        }
    return out


def markdown(table: dict[tuple[str, str], dict[str, Any]]) -> str:
    head = ("| scenario | policy | SLO attain. mean | worst | GPU-h ded. | GPU-h spot | cost $ "
            "| vs static | failed |")  # fmt: skip
    lines = [head, "| " + " | ".join(["---"] * 9) + " |"]
    for scenario in SCENARIOS:
        static = table.get((scenario, "static-peak"), {}).get("cost")
        for policy in POLICY_NAMES:
            c = table.get((scenario, policy))
            if c is None:
                continue
            versus = f"{c['cost'] / static:.0%}" if static else "-"
            lines.append(
                f"| {scenario} | {policy} | {c['attainment_mean']:.4f} | "
                f"{c['attainment_worst']:.4f} | {c['gpu_hours_dedicated']:,.0f} | "
                f"{c['gpu_hours_spot']:,.0f} | {c['cost']:,.0f} | {versus} | {c['failed']:,} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.autoscaler_matrix")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--scenarios", nargs="+", default=list(SCENARIOS))
    p.add_argument("--policies", nargs="+", default=list(POLICY_NAMES))
    p.add_argument("--tick", type=float, default=2.0)
    p.add_argument("--only-blackout", action="store_true",
                   help="rerun the blackout runs alone, into the existing results")  # fmt: skip
    p.add_argument("--keep-others", action="store_true",
                   help="keep the existing results' runs of the policies not rerun (a change "
                   "to our policy leaves the baselines' deterministic runs as they were)")  # fmt: skip
    opts = p.parse_args(argv)
    runs = [
        (scenario, policy, seed, opts.tick, (), {})
        for scenario in opts.scenarios
        for policy in opts.policies
        for seed in opts.seeds
        if not opts.only_blackout
    ]
    if "diurnal" in opts.scenarios:
        runs += [("diurnal", policy, seed, opts.tick, (BLACKOUT,), {})
                 for policy in OURS[:2] if policy in opts.policies
                 for seed in opts.seeds]  # fmt: skip
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()  # fmt: skip
    rows = list(run_all(runs, opts.jobs))
    if opts.only_blackout:
        before = json.loads(RESULTS.read_text())
        before["blackout"], before["blackout_commit"] = rows, commit
        before["runs"] = [r for r in before["runs"] if not r["faults"]] + rows
        RESULTS.write_text(json.dumps(before, indent=1) + "\n")
        for row in rows:
            print(row["policy"], row["seed"], json.dumps(row["faults"]))
        return 0
    kept_from = None
    if opts.keep_others:
        before = json.loads(RESULTS.read_text())
        kept_from = before["commit"]
        rows += [r for r in before["runs"] if r["policy"] not in opts.policies]
    table = cells(rows)
    report = {
        "command": "python -m bench.autoscaler_matrix " + " ".join(argv or sys.argv[1:]),
        "date": datetime.date.today().isoformat(),
        "commit": commit,
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, "
        f"python {platform.python_version()}",
        "seeds": opts.seeds,
        "tick_s": opts.tick,
        "table": [{"scenario": s, "policy": p, **c} for (s, p), c in sorted(table.items())],
        "goal_figures": goal_figures(table),
        "blackout": [r for r in rows if r["faults"]],
        "runs": rows,
    }
    if kept_from is not None:
        report["others_commit"] = kept_from  # where the runs of the other policies come from
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=1) + "\n")
    print(markdown(table))
    print(json.dumps(report["goal_figures"], indent=1))
    for row in report["blackout"]:
        print(row["policy"], row["seed"], json.dumps(row["faults"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
