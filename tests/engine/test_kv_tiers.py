"""The KV tiers wired into the engine core (engine/core/kv_tiers.py): multi-turn
conversations whose KV exceeds the device pool several times over give the same greedy
tokens with and without tiers; returning turns are restored from DRAM and from NVMe
(counted by the tiers' metrics) and the prefilled-token count drops by exactly the tokens
restored; bad NVMe files and a full tier only cost hits; forced preemption by swap gives
the same tokens, counted apart from recompute."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families

from infleet.engine.args import EngineArgs
from infleet.engine.llm_engine import LLMEngine
from infleet.engine.loader import load_model
from infleet.engine.messages import SamplingParams
from tests.conftest import REPO
from tests.engine.serving import SMOLLM2, smollm2
from tests.engine.tiny_models import VOCAB_SIZE, build_checkpoint

BS = 4
DEVICE_BLOCKS = 24  # 96 tokens: one conversation's history, not four
CONVERSATIONS, TURNS = 4, 4
NEW = 6
GREEDY = SamplingParams(max_tokens=NEW, temperature=0.0, ignore_eos=True)
SLOT = 4096  # one tiny-llama block (2 layers, K and V, 4 tokens, 2 heads x 16, fp32) in a slot
FILE = 4096 + SLOT  # header + slot
# SmolLM2-135M: 30 layers, 3 KV heads x 64, fp32: 4 tokens of K and V are 90 KiB.
SMOL_SLOT = 92160
SMOL_FILE = 4096 + SMOL_SLOT


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = build_checkpoint(tmp_path_factory.mktemp("tiers"), "llama")
    return path, load_model(str(path), device="cpu", dtype="float32")


def engine(tiny, **kw) -> LLMEngine:
    path, loaded = tiny
    args = dict(
        model=str(path), block_size=BS, num_kv_blocks=DEVICE_BLOCKS, max_num_batched_tokens=32,
        max_num_seqs=4,
    )  # fmt: skip
    args.update(kw)
    return LLMEngine(EngineArgs(**args), loaded)


def generate(eng: LLMEngine, rid: str, prompt: list[int]) -> list[int]:
    eng.add_request(rid, prompt, GREEDY)
    out: list[int] = []
    steps = 0
    while eng.has_unfinished():
        for o in eng.step():
            assert o.error is None, o.error
            out += o.token_ids
        steps += 1
        assert steps < 2000, "no progress"
    return out


def conversations(eng: LLMEngine, turns: int = TURNS, seed: int = 1) -> list[list[int]]:
    """Round-robin multi-turn chats: each turn is the whole history plus 5 new tokens, so
    every returning turn finds its history evicted from the device by the others."""
    rng = random.Random(seed)
    system = [rng.randrange(3, VOCAB_SIZE) for _ in range(12)]
    history = [list(system) for _ in range(CONVERSATIONS)]
    answers = []
    for t in range(turns):
        for c in range(CONVERSATIONS):
            history[c] += [rng.randrange(3, VOCAB_SIZE) for _ in range(5)]
            out = generate(eng, f"c{c}t{t}", history[c])
            history[c] += out
            answers.append(out)
    return answers


def tier_samples(eng: LLMEngine) -> dict[tuple[str, str], float]:
    """{(metric sample name, tier): value} from the text the engine's /metrics serves."""
    text = eng.output.metrics.render().decode()
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith("infleet:kv_tier"):
                found[s.name, s.labels.get("tier", "")] = s.value
    return found


@pytest.fixture(scope="module")
def baseline(tiny):
    eng = engine(tiny)
    answers = conversations(eng)
    return answers, eng.core.stats()


def test_dram_tier_restores_returning_turns_with_identical_tokens(tiny, baseline):
    expected, base_stats = baseline
    eng = engine(tiny, kv_dram_size=512 * SLOT)
    assert conversations(eng) == expected
    eng.record_metrics()
    stats, m = eng.core.stats(), tier_samples(eng)
    # Every returning turn found its history below the device pool.
    assert stats.kv_restored_tokens_total > 0
    assert m["infleet:kv_tier_hits_total", "dram"] * BS == stats.kv_restored_tokens_total
    assert stats.prefix_hits_total == base_stats.prefix_hits_total
    assert (
        base_stats.prompt_tokens_computed_total - stats.prompt_tokens_computed_total
        == stats.kv_restored_tokens_total
    )
    assert m["infleet:kv_tier_restore_seconds_count", "dram"] > 0
    assert m["infleet:kv_tier_usage_bytes", "dram"] <= 512 * SLOT
    eng.core.shutdown()


def test_nvme_tier_restores_what_dram_no_longer_holds(tiny, baseline, tmp_path):
    expected, base_stats = baseline
    # DRAM holds 16 blocks and NVMe 40 files of the ~60 blocks in play: both under pressure.
    eng = engine(tiny, kv_dram_size=16 * SLOT, kv_nvme_size=40 * FILE, kv_nvme_path=str(tmp_path))
    assert conversations(eng) == expected
    assert eng.core.tiers is not None and eng.core.tiers.store.flush(30)
    on_disk = sum(f.stat().st_size for f in tmp_path.rglob("*") if f.is_file())
    assert 0 < on_disk <= 40 * FILE  # the tier never exceeds its size
    eng.record_metrics()
    stats, m = eng.core.stats(), tier_samples(eng)
    assert m["infleet:kv_tier_hits_total", "nvme"] > 0
    assert m["infleet:kv_tier_read_bytes_total", "nvme"] > 0
    assert m["infleet:kv_tier_written_bytes_total", "nvme"] > 0
    assert m["infleet:kv_tier_usage_bytes", "dram"] <= 16 * SLOT
    assert m["infleet:kv_tier_usage_bytes", "nvme"] <= 40 * FILE
    restored = (
        m["infleet:kv_tier_hits_total", "dram"] + m["infleet:kv_tier_hits_total", "nvme"]
    ) * BS
    assert restored == stats.kv_restored_tokens_total
    assert (
        base_stats.prompt_tokens_computed_total - stats.prompt_tokens_computed_total
        == stats.kv_restored_tokens_total
    )
    eng.core.shutdown()


def _flip(f: Path, other: Path) -> None:
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x40
    f.write_bytes(bytes(data))


def _truncate(f: Path, other: Path) -> None:
    f.write_bytes(f.read_bytes()[: FILE // 2])


def _foreign(f: Path, other: Path) -> None:
    """The same block's file written by another model (same shape, other weights)."""
    twin = other / f.relative_to(f.parents[1])
    f.write_bytes(twin.read_bytes() if twin.exists() else b"")


@pytest.fixture(scope="module")
def other_model(tmp_path_factory):
    path = build_checkpoint(tmp_path_factory.mktemp("other"), "llama", seed=5)
    return path, load_model(str(path), device="cpu", dtype="float32")


@pytest.mark.parametrize(
    "damage", [_flip, _truncate, _foreign], ids=["corrupt", "truncated", "foreign"]
)
def test_bad_nvme_files_are_recomputed_with_identical_tokens(
    tiny, other_model, baseline, tmp_path, damage
):
    expected, _ = baseline
    tiers = dict(kv_dram_size=128 * SLOT, kv_nvme_size=1024 * FILE, kv_nvme_path=str(tmp_path))
    for model in (tiny, other_model):
        first = engine(model, **tiers)
        conversations(first)
        first.core.shutdown()
    # A new engine on the same directory finds the first's files, then they go bad.
    second = engine(tiny, **tiers)
    store = second.core.tiers.store  # type: ignore[union-attr]
    ours = store.nvme.dir  # type: ignore[union-attr]
    (theirs,) = [d for d in tmp_path.iterdir() if d != ours]
    files = sorted(ours.rglob("*.kv"))
    assert len(files) > 8
    if damage is _foreign:  # both models wrote the shared system prompt's blocks
        assert any((theirs / f.relative_to(ours)).exists() for f in files)
    for f in files:
        damage(f, theirs)
    assert conversations(second) == expected
    second.record_metrics()
    m = tier_samples(second)
    assert m["infleet:kv_tier_bad_files_total", ""] > 0
    second.core.shutdown()


def _concurrent(eng: LLMEngine, prompts: list[list[int]], max_tokens: int) -> list[list[int]]:
    params = SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)
    for i, p in enumerate(prompts):
        eng.add_request(f"r{i}", p, params)
    out: dict[str, list[int]] = {f"r{i}": [] for i in range(len(prompts))}
    steps = 0
    while eng.has_unfinished():
        for o in eng.step():
            assert o.error is None, o.error
            out[o.request_id] += o.token_ids
        steps += 1
        assert steps < 5000, "no progress"
    return list(out.values())


@pytest.mark.parametrize("async_scheduling", [True, False], ids=["async", "sync"])
def test_forced_swap_preemption_gives_the_same_tokens_and_recomputes_nothing(
    tiny, async_scheduling
):
    rng = random.Random(3)
    prompts = [[rng.randrange(3, VOCAB_SIZE) for _ in range(14)] for _ in range(4)]
    # Four sequences of 14 + 40 tokens in 30 blocks of 4: decodes run the pool dry.
    kw = dict(num_kv_blocks=30, max_num_seqs=4, async_scheduling=async_scheduling)
    base = engine(tiny, **kw)
    expected = _concurrent(base, prompts, 40)
    assert base.core.stats().preemptions_total > 0
    recomputed = base.core.stats().prompt_tokens_computed_total

    eng = engine(tiny, kv_dram_size=256 * SLOT, **kw)
    assert eng.core.tiers is not None
    eng.core.tiers.preemption = "swap"
    assert _concurrent(eng, prompts, 40) == expected
    eng.record_metrics()
    stats, m = eng.core.stats(), tier_samples(eng)
    # Every preemption was a swap: counted apart, and no prompt token computed twice.
    assert eng.core.tiers.num_swaps > 0 and stats.preemptions_total == 0
    assert m["infleet:kv_tier_swaps_total", ""] == eng.core.tiers.num_swaps
    assert stats.prompt_tokens_computed_total == sum(map(len, prompts)) < recomputed
    # Swapped slots are released when they come back: nothing stays pinned.
    assert eng.core.tiers.store.swap_room() == eng.core.tiers.store.dram.num_slots
    eng.core.shutdown()


def _namespaces_work() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True
    )
    return probe.returncode == 0


@pytest.mark.skipif(not _namespaces_work(), reason="needs unshare with user namespaces")
def test_a_full_disk_under_the_engine_costs_hits_never_tokens(tiny, baseline, tmp_path):
    """The NVMe tier on a 96 KiB tmpfs (a dozen block files) configured for 1,024 files."""
    path, _ = tiny
    disk = tmp_path / "small-disk"
    disk.mkdir()
    script = (
        f"mount -t tmpfs -o size=96k tmpfs {disk} && "
        f"exec {sys.executable} -m tests.engine.kv_tiers_full_disk {path} {disk}"
    )
    out = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["tokens"] == baseline[0]
    assert report["nvme_dropped"] > 0  # the disk filled up: blocks were dropped, not errors
    assert report["capacity"] < report["configured"]  # the tier shrank to what fits


@pytest.mark.slow
def test_smollm2_multi_turn_same_tokens_restored_from_nvme(tmp_path):
    """The real model: its history evicted turn after turn, restored from both tiers."""
    smol = ("builtin:" + SMOLLM2, smollm2())
    expected = conversations(engine(smol), turns=3)
    eng = engine(
        smol, kv_dram_size=8 * SMOL_SLOT, kv_nvme_size=256 * SMOL_FILE, kv_nvme_path=str(tmp_path)
    )
    assert conversations(eng, turns=3) == expected
    eng.record_metrics()
    m = tier_samples(eng)
    # DRAM holds 8 blocks: the returning histories come back from NVMe.
    assert m["infleet:kv_tier_hits_total", "nvme"] > 0
    assert eng.core.stats().kv_restored_tokens_total > 0
    eng.core.shutdown()


def concurrent_conversations(eng: LLMEngine, turns: int = TURNS) -> list[list[int]]:
    """Each turn of every conversation in flight at once: victims are preempted, finished
    sequences free blocks while the step in flight still writes them, and restores land
    in such blocks (the races engine/core/kv_tiers.py orders)."""
    rng = random.Random(2)
    system = [rng.randrange(3, VOCAB_SIZE) for _ in range(12)]
    history = [list(system) for _ in range(CONVERSATIONS)]
    answers = []
    for _ in range(turns):
        for c in range(CONVERSATIONS):
            history[c] += [rng.randrange(3, VOCAB_SIZE) for _ in range(5)]
        out = _concurrent(eng, [list(h) for h in history], NEW)
        for c in range(CONVERSATIONS):
            history[c] += out[c]
        answers += out
    return answers


def test_concurrent_turns_with_preemption_restore_the_same_tokens(tiny, tmp_path):
    kw = dict(num_kv_blocks=28, max_num_batched_tokens=16)
    base = engine(tiny, **kw)
    expected = concurrent_conversations(base)
    assert base.core.stats().preemptions_total > 0
    eng = engine(
        tiny, kv_dram_size=24 * SLOT, kv_nvme_size=256 * FILE, kv_nvme_path=str(tmp_path), **kw
    )
    assert concurrent_conversations(eng) == expected
    assert eng.core.stats().kv_restored_tokens_total > 0
    eng.core.shutdown()
