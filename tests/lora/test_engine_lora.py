"""The engine serves adapters token-exact: greedy tokens equal the unmerged PeftModel's
(float32) for every supported architecture, every adapter and the base model batched
together; and a mixed batch under pressure (more adapters than slots, chunked prefill,
preemption) gives each request exactly its tokens alone."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from infleet.engine.args import EngineArgs
from infleet.engine.errors import InvalidRequest
from infleet.engine.llm_engine import LLMEngine
from infleet.engine.messages import AdapterRef
from tests.lora.engine_cases import CASES, GREEDY, Case, build_case, lora_engine


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run(eng: LLMEngine, case: Case, requests, watch=None) -> dict[str, list[int]]:
    """Adds (request id, adapter, prompt index) all at once and steps to the end."""
    for rid, adapter, p in requests:
        eng.add_request(rid, case.prompts[p], GREEDY, lora=case.refs[adapter])
    tokens: dict[str, list[int]] = defaultdict(list)
    while eng.has_unfinished():
        for out in eng.step():
            assert out.error is None, out.error
            tokens[out.request_id] += out.token_ids
        if watch is not None:
            watch(eng)
    return tokens


@pytest.fixture(scope="module", params=list(CASES))
def case(request, tmp_path_factory):
    return build_case(request.param, tmp_path_factory.mktemp(request.param))


def test_greedy_tokens_equal_peft(case):
    names = list(case.refs)
    # Every adapter and the base, each on a different prompt, in one batch.
    requests = [(f"r{i}", name, i % len(case.prompts)) for i, name in enumerate(names)]
    tokens = run(lora_engine(case), case, requests)
    for rid, name, p in requests:
        assert tokens[rid] == case.expected[name, p], (name, p)
    # Non-trivial adapters: each one changes the tokens of its prompt.
    for _, name, p in requests:
        if name is not None:
            assert case.expected[name, p] != case.expected[None, p], name


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return build_case("llama", tmp_path_factory.mktemp("llama-mixed"))


def test_mixed_batch_under_pressure_gives_each_request_its_solo_tokens(llama):
    case = llama
    names = list(case.refs)  # four adapters and the base
    requests = [(f"r{i}", names[i % len(names)], i % len(case.prompts)) for i in range(15)]
    solo = {}
    for rid, name, p in requests[: len(names) * 3]:
        if (name, p) not in solo:
            solo[name, p] = run(lora_engine(case), case, [(rid, name, p)])[rid]
            assert solo[name, p] == case.expected[name, p]
    most = []

    def watch(eng: LLMEngine) -> None:
        running = {s.lora.id for s in eng.scheduler.running if s.lora is not None}
        most.append(len(running))

    # Two slots for four adapters, a 7-token budget (chunked prefill) and a KV pool too
    # small for everyone (preemption).
    eng = lora_engine(case, max_loras=2, max_num_batched_tokens=7, num_kv_blocks=24)
    tokens = run(eng, case, requests, watch)
    for rid, name, p in requests:
        assert tokens[rid] == case.expected[name, p], (rid, name)
    assert max(most) <= 2
    assert eng.scheduler.num_preemptions > 0
    stats = eng.core.stats().lora
    assert stats is not None and stats.device_evictions > 0 and stats.running == []


def test_core_refusals_name_the_adapter_and_disturb_nothing(llama, tmp_path):
    case = llama
    good = case.refs["attn-r4"]
    assert good is not None
    # Tensors whose header is fine but whose values are not (the API side reads headers
    # only): the core refuses the request when it reads them.
    bad_dir = tmp_path / "nan"
    bad_dir.mkdir()
    for f in Path(good.path).iterdir():
        (bad_dir / f.name).write_bytes(f.read_bytes())
    weights = bad_dir / "adapter_model.safetensors"
    tensors = load_file(weights)
    next(iter(tensors.values())).fill_(float("nan"))
    save_file(tensors, weights)
    eng = lora_engine(case)
    bad = AdapterRef("nan", str(bad_dir), id=99)
    with pytest.raises(InvalidRequest, match="NaN") as err:
        eng.add_request("bad", case.prompts[0], GREEDY, lora=bad)
    assert err.value.param == "model"
    assert eng.core.stats().lora.load_failures == 1
    tokens = run(eng, case, [("ok", "attn-r4", 0)])
    assert tokens["ok"] == case.expected["attn-r4", 0]
    off = LLMEngine(EngineArgs(model="tiny", num_kv_blocks=64), case.loaded)
    with pytest.raises(InvalidRequest, match="LoRA is not enabled"):
        off.add_request("r", case.prompts[0], GREEDY, lora=good)


def test_unloaded_adapter_is_forgotten_once_its_requests_end(llama):
    case = llama
    eng = lora_engine(case)
    ref = case.refs["all-r2"]
    assert ref is not None
    eng.add_request("a", case.prompts[1], GREEDY, lora=ref)
    eng.step()
    eng.core.unload_adapter(ref.id)
    tokens = defaultdict(list)
    while eng.has_unfinished():
        for out in eng.step():
            tokens[out.request_id] += out.token_ids
    assert tokens["a"] == case.expected["all-r2", 1]  # the running request finishes
    assert str(ref.id) not in eng.core.lora.cache
