"""Figures from request traces, the run's environment, and the JSON/table it prints."""

from __future__ import annotations

import json
import platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import torch

from infleet.engine.bench.stats import percentile


@dataclass(slots=True)
class RequestTrace:
    arrival: float  # seconds from the run's start (when the request was handed to the engine)
    prompt_len: int
    token_times: list[float] = field(default_factory=list)  # each output token's time


def summarize(traces: list[RequestTrace], wall: float) -> dict:
    """Throughput over the whole run and latency per request, in seconds and tok/s (as
    engine/bench/stats.py, plus arrival times: TTFT counts from each request's own)."""
    ttft = [t.token_times[0] - t.arrival for t in traces if t.token_times]
    itl = [b - a for t in traces for a, b in zip(t.token_times, t.token_times[1:], strict=False)]
    e2e = [t.token_times[-1] - t.arrival for t in traces if t.token_times]
    inputs = sum(t.prompt_len for t in traces)
    outputs = sum(len(t.token_times) for t in traces)
    return {
        "requests": len(traces),
        "input_tokens": inputs,
        "output_tokens": outputs,
        "wall_s": wall,
        "output_tok_s": outputs / wall,
        "total_tok_s": (inputs + outputs) / wall,
        "ttft_p50_s": percentile(ttft, 50),
        "ttft_p99_s": percentile(ttft, 99),
        "itl_p50_s": percentile(itl, 50),
        "itl_p99_s": percentile(itl, 99),
        "e2e_p50_s": percentile(e2e, 50),
    }


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
            cwd=Path(__file__).resolve().parent,
        )  # fmt: skip
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def environment(device: torch.device) -> dict:
    import transformers

    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
    return {
        "device": str(device),
        "device_name": name,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "triton": triton_version,
        "transformers": transformers.__version__,
        "commit": _commit(),
        "python": platform.python_version(),
    }


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_table(report: dict) -> str:
    """One line per (model, workload, engine) with the headline figures."""
    cols = ["output_tok_s", "total_tok_s", "ttft_p50_s", "ttft_p99_s", "itl_p50_s", "itl_p99_s"]
    lines = [f"{'model':<14} {'workload':<18} {'engine':<8} " + " ".join(f"{c:>12}" for c in cols)]
    for model, runs in report["models"].items():
        for workload, engines in runs["workloads"].items():
            for engine, figures in engines.items():
                cells = " ".join(f"{_fmt(figures.get(c)):>12}" for c in cols)
                lines.append(f"{model:<14} {workload:<18} {engine:<8} {cells}")
        for key in ("decode_roofline_share", "throughput_ratio_offline_fixed"):
            if key in runs:
                lines.append(f"{model:<14} {key}: {_fmt(runs[key])}")
    return "\n".join(lines)


def write_json(path: Path, report: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
