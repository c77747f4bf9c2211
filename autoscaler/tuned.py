"""Parameters chosen on the tuning scenarios (generated: do not edit by hand).

Written by `python -m bench.tune_autoscalers`; the scenarios, grids and objective are in
that script and docs/autoscaling.md#tuning. Every policy, ours included, is tuned the
same way on scenarios that are not in the evaluation table.
"""

TUNED: dict[str, dict[str, float]] = {
    "infleet": {"burst_hold_gaps": 1.0, "panic_threshold": 1.5, "target_utilization": 0.4},
    "hpa-utilization": {"target": 0.7},
    "hpa-concurrency": {"target": 16},
    "keda-queue": {"threshold": 2},
    "knative-kpa": {"target": 16},
}
