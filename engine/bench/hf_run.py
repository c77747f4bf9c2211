"""The baseline: HF transformers `generate` with static batches over the same requests.

Static batching is what `generate` does: a batch is padded (left) to its longest prompt and
every row decodes until the batch's longest output is done. Only each request's own
output tokens count as output; a request's tokens are timed by the step that made them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from infleet.engine.bench.stats import summarize
from infleet.engine.bench.workloads import BenchRequest


def load_hf_model(uri: str, device: torch.device, dtype: torch.dtype) -> Any:
    import transformers

    from infleet.engine.loader.builtin import resolve_builtin

    path = (
        resolve_builtin(uri.removeprefix("builtin:")) if uri.startswith("builtin:") else Path(uri)
    )
    if path.suffix == ".gguf":
        model = transformers.AutoModelForCausalLM.from_pretrained(
            str(path.parent), gguf_file=path.name, dtype=dtype
        )
    else:
        model = transformers.AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)
    return model.to(device).eval()


def _generate(model: Any, batch: list[BenchRequest], pad_id: int) -> list[float]:
    """One static batch; returns the time at which each decoding step finished."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    step_times: list[float] = []

    class StepClock(StoppingCriteria):
        def __call__(
            self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any
        ) -> torch.Tensor:
            step_times.append(time.perf_counter())
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    width = max(len(r.prompt_token_ids) for r in batch)
    ids = [[pad_id] * (width - len(r.prompt_token_ids)) + r.prompt_token_ids for r in batch]
    mask = [[0] * (width - len(r.prompt_token_ids)) + [1] * len(r.prompt_token_ids) for r in batch]
    new = max(r.output_len for r in batch)
    model.generate(
        torch.tensor(ids, device=model.device),
        attention_mask=torch.tensor(mask, device=model.device),
        max_new_tokens=new,
        min_new_tokens=new,  # EOS ignored, like the engine's run
        do_sample=False,
        pad_token_id=pad_id,
        stopping_criteria=StoppingCriteriaList([StepClock()]),
    )
    return step_times


@torch.inference_mode()
def run_hf(
    model: Any, requests: list[BenchRequest], batch_size: int, pad_id: int = 0
) -> dict[str, Any]:
    _generate(model, [BenchRequest(requests[0].prompt_token_ids[:16], 4)], pad_id)  # warm-up
    times: list[list[float]] = []
    start = time.perf_counter()
    for b in range(0, len(requests), batch_size):
        batch = requests[b : b + batch_size]
        steps = _generate(model, batch, pad_id)
        times += [steps[: r.output_len] for r in batch]
    end = time.perf_counter()
    stats = summarize(times, sum(len(r.prompt_token_ids) for r in requests), start, end)
    stats["batch_size"] = batch_size
    return stats
