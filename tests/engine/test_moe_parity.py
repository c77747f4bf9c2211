"""Mixture-of-experts models token-exact against transformers, through the full engine:
tiny random Mixtral, Qwen3-MoE (top-k renormalised or not, dense layers among sparse ones)
and Qwen2-MoE (shared expert) checkpoints, greedy, with several requests batched, prefill
chunked by a small token budget, preemption by a tiny KV pool, and prefix-cache hits.

Only the public LLMEngine surface (add_request / step / metrics) is used, so these tests
survive the engine core's reorganisation."""

from __future__ import annotations

import pytest
import torch

from infleet.engine.args import EngineArgs
from infleet.engine.llm_engine import LLMEngine
from infleet.engine.loader import load_model
from infleet.engine.messages import SamplingParams
from tests.engine.tiny_models import PROMPTS, build_checkpoint, hf_greedy

MAX_NEW = 16
GREEDY = SamplingParams(max_tokens=MAX_NEW, temperature=0.0, ignore_eos=True)
MOE = dict(num_experts_per_tok=2, intermediate_size=96)
CASES = {
    # Mixtral always renormalises the top-k; every layer sparse.
    "mixtral": ("mixtral", dict(MOE, num_local_experts=4), (True, True)),
    # Qwen3-MoE, renormalised, 3 layers with the middle one dense (mlp_only_layers).
    "qwen3_moe-norm-dense-middle": (
        "qwen3_moe",
        dict(MOE, num_experts=6, moe_intermediate_size=48, norm_topk_prob=True)
        | dict(num_hidden_layers=3, mlp_only_layers=[1]),
        (True, False, True),
    ),
    # Qwen3-MoE, raw top-3 probabilities, every second layer sparse (decoder_sparse_step).
    "qwen3_moe-raw-step2": (
        "qwen3_moe",
        dict(MOE, num_experts=8, num_experts_per_tok=3, moe_intermediate_size=32)
        | dict(norm_topk_prob=False, num_hidden_layers=3, decoder_sparse_step=2),
        (False, True, False),
    ),
    # Qwen2-MoE: a sigmoid-gated shared expert beside the routed ones.
    "qwen2_moe-shared": (
        "qwen2_moe",
        dict(MOE, num_experts=4, moe_intermediate_size=32, shared_expert_intermediate_size=64),
        (True, True),
    ),
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models are all overhead: a second intra-op thread only adds sync cost."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module", params=list(CASES))
def case(request, tmp_path_factory):
    arch, overrides, sparse = CASES[request.param]
    path = build_checkpoint(tmp_path_factory.mktemp(request.param), arch, seed=1, **overrides)
    loaded = load_model(str(path), device="cpu", dtype="float32")
    # The prompts, plus a long one sharing the first's start (prefix-cache material).
    prompts = [loaded.tokenizer.encode(p) for p in PROMPTS]
    prompts.append(prompts[2] + prompts[0][1:])
    assert loaded.config.moe is not None and loaded.config.moe.sparse_layers == sparse
    return path, loaded, prompts, hf_greedy(path, prompts, MAX_NEW)


def _engine(loaded, **kw) -> LLMEngine:
    args = dict(model="tiny", block_size=4, num_kv_blocks=256, max_num_batched_tokens=2048)
    return LLMEngine(EngineArgs(**(args | kw)), loaded)


def _run(eng: LLMEngine, prompts: list[list[int]], tag: str) -> list[list[int]]:
    ids = [f"{tag}{i}" for i in range(len(prompts))]
    for rid, prompt in zip(ids, prompts, strict=True):
        eng.add_request(rid, prompt, GREEDY)
    tokens: dict[str, list[int]] = {rid: [] for rid in ids}
    while eng.has_unfinished():
        for out in eng.step():
            assert out.error is None
            tokens[out.request_id] += out.token_ids
    return [tokens[rid] for rid in ids]


def _counter(eng: LLMEngine, name: str) -> float:
    value = eng.metrics.registry.get_sample_value(f"infleet:{name}", {"model_name": eng.model_name})
    return value or 0.0


def test_batched_chunked_prefill_matches_transformers(case):
    _, loaded, prompts, expected = case
    eng = _engine(loaded, max_num_batched_tokens=12)  # the long prompts take several steps
    assert _run(eng, prompts, "b") == expected
    assert _counter(eng, "num_preemptions_total") == 0


def test_preemption_by_a_tiny_kv_pool_matches_transformers(case):
    _, loaded, prompts, expected = case
    # 24 blocks of 4 tokens: the longest request alone needs 17, so the others get preempted.
    eng = _engine(loaded, num_kv_blocks=24, max_num_batched_tokens=32, enable_prefix_caching=False)
    assert _run(eng, prompts, "p") == expected
    assert _counter(eng, "num_preemptions_total") > 0


def test_prefix_cache_hits_match_transformers(case):
    _, loaded, prompts, expected = case
    eng = _engine(loaded)
    assert _run(eng, prompts[:1], "a") == expected[:1]
    assert _run(eng, prompts, "c") == expected  # the first prompt's blocks are reused
    assert _counter(eng, "prefix_cache_hits_total") > 0


@pytest.mark.parametrize("case", ["qwen3_moe-norm-dense-middle"], indirect=True)
def test_top_k_renormalisation_changes_the_answer(case):
    """Guards the norm_topk_prob cases against passing trivially: flipped, tokens differ."""
    from infleet.engine.models.moe_block import SparseMoeBlock

    _, loaded, prompts, expected = case
    blocks = [m for m in loaded.model.modules() if isinstance(m, SparseMoeBlock)]
    assert len(blocks) == 2 and all(b.norm_topk_prob for b in blocks)
    try:
        for b in blocks:
            b.norm_topk_prob = False
        assert _run(_engine(loaded), prompts, "n") != expected
    finally:
        for b in blocks:
            b.norm_topk_prob = True


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_fused_triton_path_matches_transformers(case):
    path, _, prompts, expected = case
    loaded = load_model(str(path), device="cuda", dtype="float32")
    assert _run(_engine(loaded, max_num_batched_tokens=12), prompts, "g") == expected


@pytest.mark.parametrize("case", ["qwen3_moe-norm-dense-middle"], indirect=True)
def test_bfloat16_smoke(case):
    """bf16 through the CPU grouped_mm path: the first greedy tokens are transformers'."""
    path, _, prompts, _ = case
    loaded = load_model(str(path), device="cpu", dtype="bfloat16")
    want = hf_greedy(path, prompts[:2], 4, dtype=torch.bfloat16)
    assert [t[:4] for t in _run(_engine(loaded), prompts[:2], "h")] == want
