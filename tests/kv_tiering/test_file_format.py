"""Block file headers: what they carry, and every way a header is refused."""

from __future__ import annotations

import pytest
import torch

from infleet.kv_tiering.file_format import (
    HEADER_BYTES,
    BadBlockFile,
    check_header,
    header_for,
    pack_header,
    parse_header,
)
from infleet.kv_tiering.layout import BlockLayout

FP = bytes(range(32))
LAYOUT = BlockLayout(num_layers=3, block_size=16, num_kv_heads=2, head_dim=64, dtype=torch.bfloat16)
KEY = bytes(16 * [7])


def test_a_header_round_trips_and_fills_one_aligned_page():
    h = header_for(FP, LAYOUT, KEY, payload_crc=0xDEADBEEF)
    raw = pack_header(h)
    assert len(raw) == HEADER_BYTES
    assert parse_header(raw) == h
    assert h.dtype_name == "bfloat16" and h.payload_bytes == 2 * 3 * 16 * 2 * 64 * 2
    check_header(h, FP, LAYOUT, KEY)


@pytest.mark.parametrize(
    "expect,message",
    [
        (dict(fingerprint=bytes(32)), "another model"),
        (dict(layout=BlockLayout(3, 16, 2, 64, torch.float16)), "does not describe"),
        (dict(layout=BlockLayout(3, 32, 2, 64, torch.bfloat16)), "does not describe"),
        (dict(layout=BlockLayout(4, 16, 2, 64, torch.bfloat16)), "does not describe"),
        (dict(key=bytes(16)), "does not describe"),
    ],
    ids=["model", "dtype", "block-size", "layers", "key"],
)
def test_a_header_for_anything_else_is_refused(expect, message):
    h = parse_header(pack_header(header_for(FP, LAYOUT, KEY, 1)))
    args = dict(fingerprint=FP, layout=LAYOUT, key=KEY) | expect
    with pytest.raises(BadBlockFile, match=message):
        check_header(h, args["fingerprint"], args["layout"], args["key"])


def test_damaged_or_alien_headers_are_refused():
    raw = bytearray(pack_header(header_for(FP, LAYOUT, KEY, 1)))
    flipped = bytearray(raw)
    flipped[20] ^= 1
    with pytest.raises(BadBlockFile, match="header checksum"):
        parse_header(bytes(flipped))
    with pytest.raises(BadBlockFile, match="truncated"):
        parse_header(bytes(raw[:40]))
    with pytest.raises(BadBlockFile, match="header checksum"):
        parse_header(b"PK\x03\x04" + bytes(HEADER_BYTES - 4))  # a zip file, say


def test_packing_refuses_bad_fields():
    with pytest.raises(ValueError, match="fingerprint is 32 bytes"):
        pack_header(header_for(b"short", LAYOUT, KEY, 1))
    with pytest.raises(ValueError, match=r"block key is 1\.\.32 bytes"):
        pack_header(header_for(FP, LAYOUT, bytes(33), 1))


def test_the_layout_matches_the_engines_pool_and_its_bytes_per_block():
    from infleet.engine.core.runner import ModelRunner
    from infleet.engine.model_config import ModelConfig

    config = ModelConfig(
        architecture="llama", vocab_size=10, hidden_size=128, intermediate_size=10,
        num_layers=3, num_heads=2, num_kv_heads=2, head_dim=64,
        max_position_embeddings=64, rms_norm_eps=1e-5, rope_theta=1e4,
    )  # fmt: skip
    pool = torch.zeros(2, 3, 5, 16, 2, 64, dtype=torch.bfloat16)
    layout = BlockLayout.of_pool(pool)
    assert layout == LAYOUT
    assert layout.block_bytes == ModelRunner.kv_bytes_per_block(config, 16, torch.bfloat16)
    assert layout.slot_bytes % 4096 == 0 and layout.slot_bytes >= layout.block_bytes
    with pytest.raises(ValueError, match=r"a KV pool is \[2, layers, blocks"):
        BlockLayout.of_pool(torch.zeros(3, 5, 16))
