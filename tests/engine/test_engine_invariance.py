"""A request's tokens do not depend on what else the engine is doing: alone, inside a busy
mixed batch with chunked prefill, under preemption by a tiny KV pool, with and without
prefix-cache hits — greedy and seeded sampling, on a tiny random Llama in fp32."""

import random
from collections import defaultdict

import pytest
import torch

from infleet.engine.args import EngineArgs
from infleet.engine.llm_engine import LLMEngine
from infleet.engine.loader import load_model
from infleet.engine.messages import SamplingParams
from tests.engine.tiny_models import VOCAB_SIZE, build_checkpoint

TARGET_LEN = 37  # longer than the busy engine's budget: its prefill must be chunked
GREEDY = SamplingParams(max_tokens=24, temperature=0.0, ignore_eos=True)
SEEDED = SamplingParams(max_tokens=24, temperature=0.8, top_p=0.9, seed=5, ignore_eos=True)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """A 64-wide model is all overhead: a second intra-op thread only adds sync cost (and
    stalls badly when other processes share the cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = build_checkpoint(tmp_path_factory.mktemp("tiny-llama"), "llama", seed=3)
    return load_model(str(path), device="cpu", dtype="float32")


def engine(tiny, **kw) -> LLMEngine:
    args = dict(model="tiny", block_size=4, num_kv_blocks=512, max_num_batched_tokens=2048)
    args.update(kw)
    return LLMEngine(EngineArgs(**args), tiny)


def prompt(seed: int, n: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randrange(3, VOCAB_SIZE) for _ in range(n)]


def drive(
    eng: LLMEngine, arrivals: dict[int, list[tuple[str, list[int], SamplingParams]]]
) -> dict[str, list[int]]:
    """Run steps, adding each request at its step; returns every request's tokens."""
    tokens: dict[str, list[int]] = defaultdict(list)
    step = 0
    while eng.has_unfinished() or step <= max(arrivals):
        for rid, ids, params in arrivals.get(step, []):
            eng.add_request(rid, ids, params)
        for out in eng.step():
            tokens[out.request_id] += out.token_ids
            assert out.error is None
        step += 1
    return tokens


def busy_traffic(seed: int) -> dict[int, list[tuple[str, list[int], SamplingParams]]]:
    """Ten neighbours of mixed lengths and settings, arriving over the first steps."""
    rng = random.Random(seed)
    arrivals: dict[int, list] = defaultdict(list)
    for i in range(10):
        params = SamplingParams(
            max_tokens=rng.randrange(4, 40),
            temperature=rng.choice([0.0, 0.7, 1.2]),
            top_k=rng.choice([0, 20]),
            presence_penalty=rng.choice([0.0, 0.5]),
            ignore_eos=True,
        )
        arrivals[rng.randrange(0, 6)].append(
            (f"n{i}", prompt(100 + i, rng.randrange(3, 70)), params)
        )
    return arrivals


@pytest.fixture(scope="module")
def alone(tiny):
    out = {}
    for name, params in (("greedy", GREEDY), ("seeded", SEEDED)):
        out[name] = drive(engine(tiny), {0: [("t", prompt(1, TARGET_LEN), params)]})["t"]
    return out


@pytest.mark.parametrize("kind", ["greedy", "seeded"])
def test_busy_mixed_batch_with_chunked_prefill(tiny, alone, kind):
    params = GREEDY if kind == "greedy" else SEEDED
    eng = engine(tiny, max_num_batched_tokens=16)
    arrivals = busy_traffic(seed=7)
    arrivals[3].append(("t", prompt(1, TARGET_LEN), params))  # lands among running decodes
    assert drive(eng, arrivals)["t"] == alone[kind]
    assert eng.scheduler.num_preemptions == 0


@pytest.mark.parametrize("kind", ["greedy", "seeded"])
def test_preemption_by_a_tiny_kv_pool(tiny, alone, kind):
    params = GREEDY if kind == "greedy" else SEEDED
    # 24 blocks of 4 tokens: the target alone needs 16 of them, so neighbours collide.
    eng = engine(tiny, num_kv_blocks=24, max_num_batched_tokens=32, enable_prefix_caching=False)
    arrivals = busy_traffic(seed=11)
    arrivals[0].insert(0, ("t", prompt(1, TARGET_LEN), params))
    tokens = drive(eng, arrivals)
    assert eng.scheduler.num_preemptions > 0
    assert tokens["t"] == alone[kind]
    assert eng.block_manager.num_free_blocks == 24


def test_prefix_cache_hits_give_identical_tokens(tiny, alone):
    shared = prompt(1, TARGET_LEN)
    eng = engine(tiny)
    first = drive(eng, {0: [("a", shared, GREEDY)]})["a"]
    assert first == alone["greedy"]
    again = drive(eng, {0: [("b", shared, GREEDY), ("c", shared[:30] + prompt(2, 9), GREEDY)]})
    assert again["b"] == alone["greedy"]
    registry, labels = eng.metrics.registry, {"model_name": eng.model_name}
    hits = registry.get_sample_value("infleet:prefix_cache_hits_total", labels)
    queries = registry.get_sample_value("infleet:prefix_cache_queries_total", labels)
    assert hits == 36 + 28  # b: 9 full blocks of 4 (the last token is recomputed); c: 7 blocks
    assert queries == 3 * TARGET_LEN + 2
    uncached = engine(tiny, enable_prefix_caching=False)
    assert drive(uncached, {0: [("c", shared[:30] + prompt(2, 9), GREEDY)]})["c"] == again["c"]
