"""What one KV block is below the device: its shape, dtype and bytes, and the transfer unit.

The device pool is one tensor `[2, layers, num_blocks, block_size, kv_heads, head_dim]`
(engine/core/runner.py): a block's K and V for all layers are 2 x layers strided pieces there.
Below the device a block is one contiguous unit `[2, layers, block_size, kv_heads,
head_dim]` ("block-first"): one copy moves it between DRAM and the device, one file holds
it on NVMe, and one checksum covers it. docs/kv_tiering.md measures this choice against a
copy per layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Direct I/O needs buffer addresses, lengths and file offsets aligned to the device's
# logical block; 4 KiB covers every NVMe and page size we meet.
IO_ALIGN = 4096


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


@dataclass(frozen=True, slots=True)
class BlockLayout:
    num_layers: int
    block_size: int
    num_kv_heads: int
    head_dim: int
    dtype: torch.dtype

    def __post_init__(self) -> None:
        sizes = (self.num_layers, self.block_size, self.num_kv_heads, self.head_dim)
        if min(sizes) < 1:
            raise ValueError(f"every KV block dimension must be >= 1, got {sizes}")

    @classmethod
    def of_pool(cls, kv_cache: torch.Tensor) -> BlockLayout:
        """The layout of the blocks of a device pool `[2, L, N, bs, H, D]`."""
        if kv_cache.dim() != 6 or kv_cache.shape[0] != 2:
            raise ValueError(
                f"a KV pool is [2, layers, blocks, block_size, kv_heads, head_dim], "
                f"got {list(kv_cache.shape)}"
            )
        _, layers, _, block_size, heads, head_dim = kv_cache.shape
        return cls(layers, block_size, heads, head_dim, kv_cache.dtype)

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        """One block below the device: K and V of every layer, contiguous."""
        return (2, self.num_layers, self.block_size, self.num_kv_heads, self.head_dim)

    @property
    def block_bytes(self) -> int:
        element = torch.empty(0, dtype=self.dtype).element_size()
        return 2 * self.num_layers * self.block_size * self.num_kv_heads * self.head_dim * element

    @property
    def slot_bytes(self) -> int:
        """A DRAM slot and an NVMe payload: the block rounded up to the I/O alignment, so
        a file can be read with direct I/O straight into a slot."""
        return round_up(self.block_bytes, IO_ALIGN)

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")
