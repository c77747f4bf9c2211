"""Pipeline parallelism on CPU (gloo, one thread per rank): greedy tokens of the whole
engine at PP=2 (chunked prefill, preemption) on tiny Llama, Qwen3 and Qwen3-MoE against the single-process engine, bytes per
stage, two micro-batches in flight, and degrees refused with their numbers.

The PP=2 engine runs in a fresh process (tests/engine/tp_run.py: stage 0 there, stage 1
its child), as the tensor-parallel tests.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from infleet.engine.core.scheduler import micro_batches
from infleet.engine.distributed.degrees import ParallelConfigError, check_launch, check_model
from infleet.engine.loader import load_config, load_model
from tests.engine.test_tensor_parallel import (
    MAX_NEW,
    REPO,
    assert_same_or_near_tie,
    engine_args,
    single_process,
)
from tests.engine.tiny_models import PROMPTS, build_checkpoint

CASES = {
    "llama": ("llama", {}),
    # Tied embeddings: the last stage holds its own copy of the embedding as its LM head.
    "qwen3": ("qwen3", {"tie_word_embeddings": True}),
    "qwen3moe": (
        "qwen3_moe",
        {"num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 64},
    ),
}


def pipeline_parallel(path, prompts) -> tuple[dict, str]:
    job = {"args": engine_args(path, pipeline_parallel_size=2), "prompts": prompts,
           "max_tokens": MAX_NEW}  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "tests.engine.tp_run"], input=json.dumps(job), cwd=REPO,
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout), proc.stderr


@pytest.fixture(scope="module", params=list(CASES))
def case(request, tmp_path_factory):
    arch, overrides = CASES[request.param]
    # 4 layers: two per stage
    path = build_checkpoint(
        tmp_path_factory.mktemp(request.param), arch, num_hidden_layers=4, **overrides
    )
    tokenizer = load_model(str(path), device="cpu", dtype="float32").tokenizer
    prompts = [tokenizer.encode(p) for p in PROMPTS]
    return path, prompts


@pytest.mark.slow
def test_pp2_greedy_tokens_match_one_process_with_two_micro_batches_in_flight(case):
    path, prompts = case
    want, top2 = single_process(path, prompts)
    got, log = pipeline_parallel(path, prompts)
    assert got["preemptions"] > 0  # the PP engine went through preemption too
    # Stages hand over exact activations (no reduction reordered): the same tokens.
    assert assert_same_or_near_tie(want, top2, got["tokens"]) == 0
    # Stage 0 started micro-batch 1 before micro-batch 0's logits came back: two in flight.
    assert got["in_flight"] == 2
    events = [tuple(e) for e in got["trace"]]
    assert events.index(("start", 1)) < events.index(("done", 0))
    # Each stage holds its 2 of the 4 layers; the embedding and head are what is left.
    model = load_model(str(path), device="cpu").model
    whole = sum(p.numel() * 4 for p in model.parameters())
    layers = sum(p.numel() * 4 for p in model.model.layers.parameters())
    per_rank = [int(n) for n in re.findall(r"rank \d holds (\d+) weight bytes", log)]
    assert len(per_rank) == 2, log[-2000:]
    embed = model.model.embed_tokens.weight.numel() * 4
    for held in per_rank:
        # half of the layers, plus at most an embedding-sized matrix (and the small norm)
        assert layers / 2 <= held <= layers / 2 + embed + 4 * model.config.hidden_size
    assert sum(per_rank) < whole + embed + 1  # nothing held twice but a tied head


def test_micro_batches_cut_by_tokens_and_keep_order():
    assert micro_batches([1, 1, 1, 1], 2) == [(0, 2), (2, 4)]
    assert micro_batches([8, 1, 1], 2) == [(0, 1), (1, 3)]
    assert micro_batches([1, 1, 8], 2) == [(0, 2), (2, 3)]  # every part gets a sequence
    assert micro_batches([5], 2) == [(0, 1)]  # one sequence: one micro-batch
    assert micro_batches([3, 3, 3], 4) == [(0, 1), (1, 2), (2, 3)]


def test_pipeline_degrees_refused_with_numbers(tmp_path):
    llama = load_config(str(build_checkpoint(tmp_path, "llama", num_hidden_layers=4)))
    check_model(llama, 1, 2, False)
    check_model(llama, 1, 4, False)
    with pytest.raises(ParallelConfigError, match="--pipeline-parallel-size 3 does not divide "
                       "the model's 4 layers"):  # fmt: skip
        check_model(llama, 1, 3, False)
    with pytest.raises(ParallelConfigError, match="does not divide the model's 4 layers"):
        check_model(llama, 1, 8, False)
    with pytest.raises(ParallelConfigError, match="--pipeline-parallel-size 2 with "
                       "--tensor-parallel-size 2"):  # fmt: skip
        check_model(llama, 2, 2, False)
    with pytest.raises(ParallelConfigError, match="--pipeline-parallel-size 0 must be >= 1"):
        check_launch(1, 0, 1, 0)
