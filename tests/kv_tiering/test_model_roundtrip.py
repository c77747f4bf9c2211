"""The store with a real model's KV: a prompt's blocks spilled from a ModelRunner's pool,
the pool overwritten, the blocks restored (from DRAM, from NVMe after a restart, or up to a
corrupt file) into other device blocks, and the rest of the prompt prefilled from the first
block not restored: the greedy tokens are those of an engine that never lost the blocks.

(Phase 1: the engine's scheduler does not call the store yet; this drives the runner the
way the engine will.)"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest
import torch

from infleet.engine.core.block_manager import block_hash
from infleet.engine.core.runner import ModelRunner, SeqSlice
from infleet.engine.loader import load_model
from infleet.kv_tiering import TierConfig, TieredBlockStore, model_fingerprint
from tests.engine.tiny_models import VOCAB_SIZE, build_checkpoint

BS = 4
PROMPT_BLOCKS = 8
NEW_TOKENS = 8


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = build_checkpoint(tmp_path_factory.mktemp("tier-model"), "llama")
    loaded = load_model(str(path), device="cpu", dtype="float32")
    fingerprint = model_fingerprint(
        dataclasses.asdict(loaded.config), sorted(Path(path).glob("*.safetensors"))
    )
    return loaded, fingerprint


def prompt_tokens() -> list[int]:
    rng = random.Random(7)
    return [rng.randrange(3, VOCAB_SIZE) for _ in range(PROMPT_BLOCKS * BS + 5)]


def chained_hashes(tokens: list[int], salt: str) -> list[bytes]:
    hashes, parent = [], b""
    for i in range(len(tokens) // BS):
        parent = block_hash(parent, salt, tokens[i * BS : (i + 1) * BS])
        hashes.append(parent)
    return hashes


def finish(runner: ModelRunner, tokens: list[int], start: int, table: list[int]):
    """Prefill tokens[start:] on top of the cached prefix, then decode greedily."""
    logits = runner.forward([SeqSlice(tokens[start:], start, table)])
    first_logits = logits[0].clone()
    out = [int(logits[0].argmax())]
    pos = len(tokens)
    while len(out) < NEW_TOKENS:
        logits = runner.forward([SeqSlice([out[-1]], pos, table)])
        out.append(int(logits[0].argmax()))
        pos += 1
    return out, first_logits


def reference(tiny) -> tuple[list[int], torch.Tensor]:
    loaded, _ = tiny
    runner = ModelRunner(loaded, num_blocks=16, block_size=BS)
    tokens = prompt_tokens()
    table = list(range(16))
    split = PROMPT_BLOCKS * BS
    runner.forward([SeqSlice(tokens[:split], 0, table)])
    return finish(runner, tokens, split, table)


def corrupt_file(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[5000] ^= 0x10
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("source", ["dram", "nvme-after-restart", "nvme-corrupt-block-5"])
def test_restored_prefix_gives_the_same_greedy_tokens(tiny, tmp_path, source):
    loaded, fingerprint = tiny
    expected_tokens, expected_logits = reference(tiny)
    runner = ModelRunner(loaded, num_blocks=16, block_size=BS)
    tokens = prompt_tokens()
    split = PROMPT_BLOCKS * BS
    first_table = [15, 3, 8, 1, 12, 6, 10, 0]
    runner.forward([SeqSlice(tokens[:split], 0, first_table)])
    keys = chained_hashes(tokens[:split], salt="tenant-a")
    block_bytes = runner.kv_cache[:, :, 0].nbytes
    config = TierConfig(
        dram_bytes=32 * 4096 * -(-block_bytes // 4096), nvme_bytes=1 << 26, nvme_path=tmp_path
    )
    store = TieredBlockStore(runner.kv_cache, config, fingerprint=fingerprint)
    assert store.spill(keys, first_table).wait(10) and store.flush(10)
    runner.kv_cache.normal_()  # the device pool is used for other requests
    if source != "dram":
        store.close(5)
        if source == "nvme-corrupt-block-5":
            corrupt_file(store.nvme.path(keys[5]))
        store = TieredBlockStore(runner.kv_cache, config, fingerprint=fingerprint)
    table = [2, 4, 5, 7, 9, 11, 13, 14, 3, 8, 1, 12]  # other blocks, room for the rest
    handle = store.restore(keys, table[:PROMPT_BLOCKS])
    assert handle.wait(10)
    restored = handle.num_done
    assert restored == (5 if source == "nvme-corrupt-block-5" else PROMPT_BLOCKS)
    generated, first_logits = finish(runner, tokens, restored * BS, table)
    assert generated == expected_tokens
    if restored == PROMPT_BLOCKS:  # the same computation on the same bytes: bit-exact
        assert torch.equal(first_logits, expected_logits)
    store.close(5)


def test_another_models_blocks_are_never_restored(tiny, tmp_path):
    loaded, fingerprint = tiny
    runner = ModelRunner(loaded, num_blocks=16, block_size=BS)
    tokens = prompt_tokens()
    runner.forward([SeqSlice(tokens[: PROMPT_BLOCKS * BS], 0, list(range(8)))])
    keys = chained_hashes(tokens[: PROMPT_BLOCKS * BS], salt="")
    config = TierConfig(dram_bytes=1 << 20, nvme_bytes=1 << 26, nvme_path=tmp_path)
    store = TieredBlockStore(runner.kv_cache, config, fingerprint=fingerprint)
    assert store.spill(keys, list(range(8))).wait(10) and store.flush(10)
    store.close(5)
    other = TieredBlockStore(runner.kv_cache, config, fingerprint=bytes(32))
    assert other.lookup(keys) == []  # another fingerprint, another directory
    other.close(5)
