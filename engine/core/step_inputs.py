"""A step's flat model inputs: validated and built on the host, sent to the device in one copy.

This runs between the scheduler and the device every step, so it is on the critical path:
at batch 256 with 4k-token contexts the block tables alone are 65k ids. Nothing here is
per-token Python: token ids and block-table rows (with their -1 padding) are list
concatenations (pointer copies) packed by `struct` straight into one staging buffer (a C
loop, 2-3x faster than numpy's conversion of a list); positions and slots are numpy over
the whole batch. Validation is whole-batch reductions; only when one fails does the
per-slice check run, to raise the first bad slice's clear error. Measurements:
docs/gpu.md, `bench/runner_prep.py`.
"""

from __future__ import annotations

import itertools
import operator
import struct
from typing import TYPE_CHECKING

import numpy as np
import torch

from infleet.engine.attention import AttentionContext

if TYPE_CHECKING:
    from infleet.engine.core.runner import SeqSlice

_TORCH_DTYPES = {np.dtype(np.int64): torch.int64, np.dtype(np.int32): torch.int32}
# Block-table ids packed per `struct` call: one call per row costs most at narrow tables,
# one call for all (a 65k-element argument tuple) is slower at wide ones.
_PACK_AT_ONCE = 4096


def _pack(buf: np.ndarray, offset: int, code: str, values: list[int]) -> int:
    """Write `values` as C integers of `struct` type `code` at byte `offset` of `buf`;
    returns the offset just past them."""
    struct.pack_into(f"{len(values)}{code}", buf, offset, *values)
    return offset + struct.calcsize(code) * len(values)


class StepInputBuilder:
    """Builds `(input_ids, AttentionContext)` for a batch of slices on `device`.

    One buffer holds every field (int64 token ids, positions, slots `[T]`; int32
    cu_seqlens `[B+1]`, context lengths `[B]`, block tables `[B, W]`); the tensors are
    views into it. CPU: a fresh buffer per step, used in place (no copy). CUDA: one
    reused pinned buffer and ONE non-blocking copy into a fresh device buffer; an event
    makes the next step wait for that copy before it overwrites the pinned buffer.
    """

    def __init__(
        self,
        *,
        block_size: int,
        num_blocks: int,
        max_model_len: int,
        vocab_size: int,
        device: torch.device,
    ) -> None:
        self.block_size = block_size
        self.num_blocks = num_blocks
        self.max_model_len = max_model_len
        self.vocab_size = vocab_size
        self.device = device
        self._pinned = torch.empty(0, dtype=torch.uint8)
        self._copied = torch.cuda.Event() if device.type == "cuda" else None

    def _slice_error(self, s: SeqSlice) -> str | None:
        """Why the runner cannot compute this slice, or None if it can."""
        end = s.start_pos + len(s.token_ids)
        if not s.token_ids or s.start_pos < 0:
            return f"a slice needs tokens and start_pos >= 0, got {s}"
        if end > self.max_model_len:
            return f"position {end - 1} is beyond max_model_len {self.max_model_len}"
        needed = -(-end // self.block_size)
        table = s.block_table[:needed]
        if len(table) < needed:
            return f"block_table has {len(s.block_table)} blocks; {end} tokens need {needed}"
        if min(table) < 0 or max(table) >= self.num_blocks:
            return f"block_table {table} has ids outside [0, {self.num_blocks})"
        if min(s.token_ids) < 0 or max(s.token_ids) >= self.vocab_size:
            return f"token ids outside the vocabulary [0, {self.vocab_size})"
        return None

    def build(self, batch: list[SeqSlice]) -> tuple[torch.Tensor, AttentionContext]:
        if not batch:
            raise ValueError("empty batch")
        q_lens = [len(s.token_ids) for s in batch]
        table_lens = [len(s.block_table) for s in batch]
        starts = [s.start_pos for s in batch]
        ends = list(map(operator.add, starts, q_lens))
        num_seqs, num_tokens, width = len(batch), sum(q_lens), max(table_lens)
        int32_at = 3 * 8 * num_tokens  # byte offsets; each field stays aligned to its size
        tables_at = int32_at + 4 * (2 * num_seqs + 1)
        buf = self._staging(tables_at + 4 * num_seqs * width)
        tokens: list[int] = []
        rows: list[int] = []  # block-table rows, padded, not yet packed
        padding = [-1] * width
        offset = tables_at
        try:
            for s in batch:
                tokens += s.token_ids
                table = s.block_table
                rows += table
                rows += padding[len(table) :]
                if len(rows) >= _PACK_AT_ONCE:
                    offset = _pack(buf, offset, "i", rows)
                    rows = []
            _pack(buf, offset, "i", rows)
            _pack(buf, 0, "q", tokens)
            _pack(buf, int32_at, "i", [*itertools.accumulate(q_lens, initial=0), *ends])
        except (struct.error, OverflowError) as e:  # beyond int64/int32, or not an int
            raise ValueError(self._first_error(batch) or f"a slice holds a bad id: {e}") from e
        ids, positions, slots = buf[:int32_at].view(np.int64).reshape(3, num_tokens)
        int32s = buf[int32_at:].view(np.int32)
        cu, context_lens = int32s[: num_seqs + 1], int32s[num_seqs + 1 : 2 * num_seqs + 1]
        tables = int32s[2 * num_seqs + 1 :].reshape(num_seqs, width)
        if self._maybe_invalid(q_lens, starts, ends, table_lens, tokens, tables):
            error = self._first_error(batch)
            if error is not None:
                raise ValueError(error)

        # token j of slice i sits at start_i + (j - cu_i) = j + (end_i - cu_{i+1})
        np.add(np.arange(num_tokens), np.repeat(context_lens - cu[1:], q_lens), out=positions)
        blocks = tables[np.repeat(np.arange(num_seqs), q_lens), positions // self.block_size]
        np.multiply(blocks, self.block_size, out=slots, dtype=np.int64)
        slots += positions % self.block_size

        fields = (ids, positions, slots, cu, context_lens, tables)
        ids_t, positions_t, slots_t, cu_t, context_lens_t, tables_t = self._to_device(buf, fields)
        ctx = AttentionContext(
            cu_seqlens_q=cu_t,
            context_lens=context_lens_t,
            block_tables=tables_t,
            slot_mapping=slots_t,
            positions=positions_t,
            block_size=self.block_size,
            query_lens_host=q_lens,
            context_lens_host=ends,
        )
        return ids_t, ctx

    def _maybe_invalid(
        self,
        q_lens: list[int],
        starts: list[int],
        ends: list[int],
        table_lens: list[int],
        tokens: list[int],
        tables: np.ndarray,
    ) -> bool:
        """Whole-batch checks (builtins over O(batch) lists, numpy over the tables): False
        means every slice is valid; True sends the batch through `_slice_error` slice by
        slice. Ids past the blocks a slice uses are not checked there, so an odd one in
        that tail raises a false alarm here, never a wrong verdict."""
        bs = self.block_size
        if (
            min(q_lens) < 1
            or min(starts) < 0
            or max(ends) > self.max_model_len
            or any(end > n * bs for end, n in zip(ends, table_lens, strict=True))
            or min(tokens) < 0
            or max(tokens) >= self.vocab_size
        ):
            return True
        lowest = int(tables.min())
        padding = tables.size - sum(table_lens)  # the -1s that are padding, not ids
        return (
            int(tables.max()) >= self.num_blocks
            or lowest < -1
            or (lowest == -1 and np.count_nonzero(tables == -1) != padding)
        )

    def _first_error(self, batch: list[SeqSlice]) -> str | None:
        return next((e for e in map(self._slice_error, batch) if e is not None), None)

    def _staging(self, nbytes: int) -> np.ndarray:
        """A host byte buffer to write this step's inputs into."""
        if self._copied is None:
            return np.empty(nbytes, dtype=np.uint8)
        self._copied.synchronize()  # the last step's copy has read the pinned buffer
        if self._pinned.numel() < nbytes:
            size = 1 << max(nbytes - 1, 0).bit_length()
            self._pinned = torch.empty(size, dtype=torch.uint8, pin_memory=True)
        return self._pinned[:nbytes].numpy()

    def _to_device(self, buf: np.ndarray, fields: tuple[np.ndarray, ...]) -> list[torch.Tensor]:
        """`fields` (views into `buf`) as tensors on the device: on CPU the arrays
        themselves; elsewhere views into one copy of the whole buffer."""
        if self.device.type == "cpu":
            return [torch.from_numpy(f) for f in fields]
        host = self._pinned[: buf.nbytes] if self._copied is not None else torch.from_numpy(buf)
        moved = host.to(self.device, non_blocking=True)
        if self._copied is not None:
            self._copied.record()
        base = buf.__array_interface__["data"][0]
        views = []
        for f in fields:
            at = f.__array_interface__["data"][0] - base
            views.append(moved[at : at + f.nbytes].view(_TORCH_DTYPES[f.dtype]).view(f.shape))
        return views
