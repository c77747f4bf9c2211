"""Paged attention backends against dense causal attention computed from the full K/V.

One flat batch mixes decodes, a prefill chunk on top of earlier context and fresh prefills,
with GQA and blocks scattered over the pool by a random block table."""

from __future__ import annotations

import random

import pytest
import torch

from infleet.engine.attention import (
    AttentionContext,
    available_backends,
    reset_context,
    select_backend,
    set_context,
)

H, HKV, D, BLOCK, NUM_BLOCKS = 4, 2, 16, 4, 48
# (tokens already cached, tokens computed this step) per sequence
MIXED = [(36, 1), (13, 7), (0, 9), (0, 1), (20, 1), (5, 3), (3, 1)]


def dense_attention(q, k, v, scale, window):
    """q [n, H, D] are the last n positions of k/v [L, Hkv, D]; float64, one query at a time."""
    n, length = q.shape[0], k.shape[0]
    k = k.double().repeat_interleave(H // HKV, dim=1)
    v = v.double().repeat_interleave(H // HKV, dim=1)
    out = torch.empty(q.shape, dtype=torch.float64)
    for i in range(n):
        pos = length - n + i
        lo = 0 if window is None else max(0, pos - window + 1)
        scores = torch.einsum("hd,khd->hk", q[i].double(), k[lo : pos + 1]) * scale
        out[i] = torch.einsum("hk,khd->hd", scores.softmax(-1), v[lo : pos + 1])
    return out


def make_step(specs, dtype=torch.float32, device="cpu", seed=0):
    gen = torch.Generator().manual_seed(seed)
    blocks = list(range(NUM_BLOCKS))
    random.Random(seed).shuffle(blocks)
    k_cache = torch.zeros(NUM_BLOCKS, BLOCK, HKV, D, dtype=dtype)
    v_cache = torch.zeros_like(k_cache)
    tables, full_k, full_v, qs, ks, vs, slots = [], [], [], [], [], [], []
    for before, n in specs:
        table = [blocks.pop() for _ in range(-(-(before + n) // BLOCK))]
        seq_k = torch.randn(before + n, HKV, D, generator=gen).to(dtype)
        seq_v = torch.randn(before + n, HKV, D, generator=gen).to(dtype)
        for p in range(before):  # earlier context, written straight into its blocks
            k_cache[table[p // BLOCK], p % BLOCK] = seq_k[p]
            v_cache[table[p // BLOCK], p % BLOCK] = seq_v[p]
        slots += [table[p // BLOCK] * BLOCK + p % BLOCK for p in range(before, before + n)]
        qs.append(torch.randn(n, H, D, generator=gen).to(dtype))
        ks.append(seq_k[before:])
        vs.append(seq_v[before:])
        tables.append(table)
        full_k.append(seq_k)
        full_v.append(seq_v)
    width = max(map(len, tables))
    lens = [before + n for before, n in specs]
    cu = [0]
    for _, n in specs:
        cu.append(cu[-1] + n)
    ctx = AttentionContext(
        cu_seqlens_q=torch.tensor(cu, dtype=torch.int32, device=device),
        context_lens=torch.tensor(lens, dtype=torch.int32, device=device),
        block_tables=torch.tensor(
            [t + [-1] * (width - len(t)) for t in tables], dtype=torch.int32, device=device
        ),
        slot_mapping=torch.tensor(slots, dtype=torch.int64, device=device),
        positions=torch.cat([torch.arange(b, b + n) for b, n in specs]).to(device),
        block_size=BLOCK,
        query_lens_host=[n for _, n in specs],
        context_lens_host=lens,
    )
    step = [torch.cat(x).to(device) for x in (qs, ks, vs)]
    return ctx, step, (k_cache.to(device), v_cache.to(device)), tables, full_k, full_v


def check_backend(name, window, specs=MIXED, dtype=torch.float32, device="cpu", atol=2e-5):
    ctx, (q, k, v), (k_cache, v_cache), tables, full_k, full_v = make_step(specs, dtype, device)
    set_context(ctx)
    try:
        out = select_backend(name, torch.device(device)).forward(
            q, k, v, k_cache, v_cache, scale=D**-0.5, sliding_window=window
        )
    finally:
        reset_context()
    assert out.shape == q.shape and out.dtype == dtype
    start = 0
    for (before, n), table, seq_k, seq_v in zip(specs, tables, full_k, full_v, strict=True):
        want = dense_attention(q[start : start + n].cpu(), seq_k, seq_v, D**-0.5, window)
        torch.testing.assert_close(out[start : start + n].cpu().double(), want, atol=atol, rtol=0)
        for p in range(before, before + n):  # this step's K/V landed in their slots
            assert torch.equal(k_cache[table[p // BLOCK], p % BLOCK].cpu(), seq_k[p])
            assert torch.equal(v_cache[table[p // BLOCK], p % BLOCK].cpu(), seq_v[p])
        start += n


@pytest.mark.parametrize("window", [None, 5], ids=["full", "window5"])
@pytest.mark.parametrize("backend", ["reference", "sdpa"])
def test_paged_attention_matches_dense(backend, window):
    check_backend(backend, window)


@pytest.mark.parametrize("specs", [[(36, 1), (7, 1), (0, 1)], [(29, 1)]], ids=["decodes", "one"])
def test_decode_only_batches(specs):
    check_backend("sdpa", None, specs)  # the padded-batch and the exact-length decode paths
    check_backend("sdpa", 4, specs)


def test_reference_accumulates_in_fp32_for_bf16():
    check_backend("reference", None, dtype=torch.bfloat16, atol=2e-2)


def test_backend_selection():
    cpu = torch.device("cpu")
    assert select_backend("auto", cpu).name == "sdpa"
    assert select_backend("torch", cpu).name == "sdpa"
    assert select_backend("reference", cpu).name == "reference"
    with pytest.raises(ValueError, match="unknown attention backend 'nope'; available: reference"):
        select_backend("nope", cpu)
    assert "auto" in available_backends()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("backend", ["reference", "sdpa"])
def test_paged_attention_on_cuda(backend):
    check_backend(backend, None, device="cuda")
    check_backend(backend, 5, dtype=torch.bfloat16, device="cuda", atol=3e-2)
