"""Triton paged attention: one kernel for prefill chunks and decodes over block tables.

Each program owns a tile of `BLOCK_Q` query tokens of one sequence times the `GROUP`
query heads that share one KV head (GQA packing: K/V are read once per group, and a
decode's group fills the matrix rows a single query cannot). It walks the sequence's
keys `BLOCK_N` at a time, gathering rows from the pages its block table names, with an
online softmax in base 2. Split-KV (flash-decoding) divides a tile's keys among
`NUM_SPLITS` programs, each leaving an unnormalized partial result that
`combine_splits_kernel` merges: decodes of long contexts then fill the GPU even at
batch 1. FP8 caches are read as e4m3 and converted to the query dtype; the K scale
folds into the score scale and the V scale into the output, so dequantizing costs one
multiply per tile row.
"""

from __future__ import annotations

import triton
import triton.language as tl

from infleet.engine.kernels.interpreter import match_gpu_semantics

match_gpu_semantics()  # the interpreter (CPU only) rounds as the GPU does


# Batch-size ints are not specialized (on ==1 or %16): a new batch size must not recompile.
@triton.jit(do_not_specialize=["num_seqs", "search_steps"])
def paged_attention_kernel(
    q_ptr, k_cache_ptr, v_cache_ptr, out_ptr, part_acc_ptr, part_ml_ptr,
    cu_seqlens_q_ptr, context_lens_ptr, block_tables_ptr, k_scale_ptr, v_scale_ptr,
    qk_scale, num_seqs, search_steps,
    stride_qt, stride_qh, stride_kb, stride_ks, stride_kh, stride_vb, stride_vs, stride_vh,
    stride_ot, stride_oh, stride_bt, k_scale_stride, v_scale_stride,
    GROUP: tl.constexpr, GROUP_PAD: tl.constexpr, BLOCK_Q: tl.constexpr,
    BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
    PAGE: tl.constexpr, WINDOW: tl.constexpr, NUM_SPLITS: tl.constexpr,
    HAS_SCALES: tl.constexpr, DOT_PRECISION: tl.constexpr, DECODE_ONLY: tl.constexpr,
):  # fmt: skip
    BLOCK_M: tl.constexpr = BLOCK_Q * GROUP_PAD
    tile = tl.program_id(0)
    kv_head = tl.program_id(1)
    split = tl.program_id(2)
    num_q_heads = tl.num_programs(1) * GROUP

    if DECODE_ONLY:  # one query per sequence: tile i is sequence i
        seq = tile
        q_block = 0
    else:
        # Sequence s owns tiles [cu[s] // BLOCK_Q + s, cu[s+1] // BLOCK_Q + s + 1): enough
        # for its ceil(q_len / BLOCK_Q) tiles, computable without a host pass. Binary search.
        lo = tl.full((), 0, tl.int32)
        hi = tl.full((), 0, tl.int32) + num_seqs
        for _ in range(search_steps):
            mid = (lo + hi) // 2
            go_right = tl.load(cu_seqlens_q_ptr + mid) // BLOCK_Q + mid <= tile
            lo = tl.where(go_right, mid, lo)
            hi = tl.where(go_right, hi, mid)
        seq = lo
        q_block = tile - (tl.load(cu_seqlens_q_ptr + seq) // BLOCK_Q + seq)
    q_begin = tl.load(cu_seqlens_q_ptr + seq)
    q_len = tl.load(cu_seqlens_q_ptr + seq + 1) - q_begin
    if q_block * BLOCK_Q >= q_len:
        return
    context_len = tl.load(context_lens_ptr + seq)
    prefix = context_len - q_len  # keys cached before this step's queries

    rows = tl.arange(0, BLOCK_M)
    q_idx = q_block * BLOCK_Q + rows // GROUP_PAD
    head = kv_head * GROUP + rows % GROUP_PAD
    row_ok = (q_idx < q_len) & (rows % GROUP_PAD < GROUP)
    dims = tl.arange(0, BLOCK_D)
    dim_ok = dims < HEAD_DIM
    token = (q_begin + q_idx).to(tl.int64)
    q = tl.load(
        q_ptr + token[:, None] * stride_qt + head[:, None] * stride_qh + dims[None, :],
        mask=row_ok[:, None] & dim_ok[None, :],
        other=0.0,
    )
    q_pos = prefix + q_idx

    # Keys this tile can see: [kv_begin, kv_end), split evenly (in BLOCK_N tiles).
    kv_end = prefix + tl.minimum((q_block + 1) * BLOCK_Q, q_len)
    kv_begin = 0
    if WINDOW > 0:
        kv_begin = tl.maximum(prefix + q_block * BLOCK_Q - WINDOW + 1, 0)
    first_tile = kv_begin // BLOCK_N
    num_tiles = tl.cdiv(kv_end, BLOCK_N) - first_tile
    per_split = tl.cdiv(num_tiles, NUM_SPLITS)
    tile_lo = first_tile + split * per_split
    tile_hi = tl.minimum(tile_lo + per_split, first_tile + num_tiles)

    v_scale = 1.0
    if HAS_SCALES:
        qk_scale = qk_scale * tl.load(k_scale_ptr + kv_head * k_scale_stride)
        v_scale = tl.load(v_scale_ptr + kv_head * v_scale_stride)

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    for t in range(tile_lo, tile_hi):
        keys = t * BLOCK_N + tl.arange(0, BLOCK_N)
        key_ok = keys < kv_end
        page = tl.load(block_tables_ptr + seq * stride_bt + keys // PAGE, mask=key_ok, other=0)
        page = page.to(tl.int64)
        in_page = keys % PAGE
        kv_mask = key_ok[:, None] & dim_ok[None, :]
        k_rows = page * stride_kb + in_page * stride_ks + kv_head * stride_kh
        k = tl.load(k_cache_ptr + k_rows[:, None] + dims[None, :], mask=kv_mask, other=0.0)
        k = k.to(q.dtype)
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION)
        s = s * qk_scale
        visible = key_ok[None, :] & (keys[None, :] <= q_pos[:, None])
        if WINDOW > 0:
            visible = visible & (q_pos[:, None] - keys[None, :] < WINDOW)
        s = tl.where(visible, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # rows with nothing visible yet
        p = tl.exp2(s - m_safe[:, None])
        alpha = tl.exp2(m_i - m_safe)
        l_i = l_i * alpha + tl.sum(p, 1)
        v_rows = page * stride_vb + in_page * stride_vs + kv_head * stride_vh
        v = tl.load(v_cache_ptr + v_rows[:, None] + dims[None, :], mask=kv_mask, other=0.0)
        v = v.to(q.dtype)
        p = p.to(q.dtype)  # the P operand is rounded to the query dtype, as in flash attention
        acc = acc * alpha[:, None] + tl.dot(p, v, input_precision=DOT_PRECISION)
        m_i = m_new
    acc = acc * v_scale

    out_mask = row_ok[:, None] & dim_ok[None, :]
    if NUM_SPLITS == 1:
        out = acc / tl.where(l_i > 0, l_i, 1.0)[:, None]  # l is 0 only for an empty context
        out_ptrs = out_ptr + token[:, None] * stride_ot + head[:, None] * stride_oh
        tl.store(out_ptrs + dims[None, :], out.to(out_ptr.dtype.element_ty), mask=out_mask)
    else:
        part = (token * num_q_heads + head) * NUM_SPLITS + split
        tl.store(part_acc_ptr + part[:, None] * HEAD_DIM + dims[None, :], acc, mask=out_mask)
        tl.store(part_ml_ptr + part * 2, m_i, mask=row_ok)
        tl.store(part_ml_ptr + part * 2 + 1, l_i, mask=row_ok)


@triton.jit
def combine_splits_kernel(
    part_acc_ptr, part_ml_ptr, out_ptr, stride_ot, stride_oh,
    NUM_SPLITS: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    """One (token, head): out = sum_s 2^(m_s - M) acc_s / sum_s 2^(m_s - M) l_s."""
    token = tl.program_id(0).to(tl.int64)
    head = tl.program_id(1)
    base = (token * tl.num_programs(1) + head) * NUM_SPLITS
    splits = tl.arange(0, NUM_SPLITS)
    m = tl.load(part_ml_ptr + (base + splits) * 2)
    l_sum = tl.load(part_ml_ptr + (base + splits) * 2 + 1)
    m_max = tl.max(m, 0)
    weight = tl.exp2(m - tl.where(m_max == float("-inf"), 0.0, m_max))  # empty splits -> 0
    denom = tl.sum(weight * l_sum, 0)
    dims = tl.arange(0, BLOCK_D)
    dim_ok = dims < HEAD_DIM
    acc = tl.load(
        part_acc_ptr + (base + splits)[:, None] * HEAD_DIM + dims[None, :],
        mask=dim_ok[None, :],
        other=0.0,
    )
    out = tl.sum(acc * weight[:, None], 0) / tl.where(denom > 0, denom, 1.0)
    out_ptrs = out_ptr + token * stride_ot + head * stride_oh + dims
    tl.store(out_ptrs, out.to(out_ptr.dtype.element_ty), mask=dim_ok)
