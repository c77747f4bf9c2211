"""Fit the replica model to an `infleet bench` run.

The bench writes, per model and workload, figures like
`{"requests", "input_tokens", "output_tokens", "wall_s", "output_tok_s", "total_tok_s",
"ttft_p50_s", "itl_p50_s", ...}` (engine/bench/gpu_report.py). From the busiest run of
our engine ("ours"; any figures dict with those keys is accepted):

- the decode batch it ran: output tok/s x ITL (Little's law for sequences);
- decode terms (overhead, weights and KV reads) scaled so a step at that batch and
  context takes the measured p50 ITL;
- prefill cost per token: the wall time the decode steps did not use, over the prompt
  tokens (a bench drives its replica flat out, so the rest of the time was prefill).

Two scale factors, not a full fit: enough to move the H100 defaults to another GPU or
model, and honest about being an approximation (docs/autoscaling.md).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from infleet.autoscaler.simulator.service_model import ReplicaModel

NEEDED = ("requests", "input_tokens", "output_tokens", "wall_s", "output_tok_s", "itl_p50_s")


def _figures(node: Any, engine: str | None = None) -> Iterator[tuple[str | None, dict]]:
    """Every dict holding the bench figures, with the engine key it sat under."""
    if isinstance(node, dict):
        if all(isinstance(node.get(k), int | float) for k in NEEDED):
            yield engine, node
            return
        for key, value in node.items():
            yield from _figures(value, key if isinstance(value, dict) else engine)
    elif isinstance(node, list):
        for value in node:
            yield from _figures(value, engine)


def from_bench(path: str | Path, base: ReplicaModel | None = None) -> ReplicaModel:
    path = Path(path)
    try:
        report = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"--calibration {path}: no such file") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"--calibration {path}: not JSON ({err})") from None
    found = list(_figures(report))
    ours = [f for engine, f in found if engine == "ours"] or [f for _, f in found]
    ours = [f for f in ours if f["wall_s"] > 0 and f["output_tokens"] > 0 and f["itl_p50_s"] > 0]
    if not ours:
        raise ValueError(
            f"--calibration {path}: no bench figures with {', '.join(NEEDED)} "
            "(write one with `infleet bench`)"
        )
    run = max(ours, key=lambda f: f["output_tok_s"])
    return fit(run, base or ReplicaModel())


def fit(run: dict, base: ReplicaModel) -> ReplicaModel:
    requests = max(run["requests"], 1)
    batch = max(1.0, run["output_tok_s"] * run["itl_p50_s"])
    context = batch * (run["input_tokens"] + run["output_tokens"] / 2) / requests
    decode = run["itl_p50_s"] / base.step_s(batch, 0, context)
    decode_time = run["output_tokens"] / batch * run["itl_p50_s"]
    prefill_time = run["wall_s"] - decode_time
    prefill = base.prefill_s_per_token * decode
    if prefill_time > 0 and run["input_tokens"] > 0:
        prefill = prefill_time / run["input_tokens"]
    return dataclasses.replace(
        base,
        overhead_s=base.overhead_s * decode,
        weights_s=base.weights_s * decode,
        kv_s_per_token=base.kv_s_per_token * decode,
        prefill_s_per_token=prefill,
    )
