"""`max_loras` device slots: every adapted linear layer's A and B for each resident adapter.

Per engine linear (`qkv_proj`, ...), one A buffer [layers, slots, parts * rank, in] and
one B buffer [layers, slots, out, rank], where `rank` is `--max-lora-rank` rounded up to
a multiple of 8 (the torch path's grouped GEMMs want 16-byte strides). An adapter of lower
rank, or one that skips a module or a packed part, leaves zeros there, which add exactly
nothing; so every slot has the same shape and one grouped GEMM serves all of them. Writing a slot is plain
copies (non-blocking from pinned host memory): the caller must not overwrite a slot that
a step still in flight on the device reads (AdapterCache's pins guard that).
"""

from __future__ import annotations

import torch

from infleet.lora.base_model import BaseModelShape, LinearShape
from infleet.lora.host_weights import HostAdapter


class DeviceSlots:
    def __init__(
        self,
        base: BaseModelShape,
        max_loras: int,
        max_rank: int,
        dtype: torch.dtype,
        device: torch.device | str = "cpu",
    ) -> None:
        self.base, self.max_loras = base, max_loras
        self.rank = -(-max_rank // 8) * 8
        if torch.device(device).type != "cuda":
            if not hasattr(torch.nn.functional, "grouped_mm"):
                raise RuntimeError(f"LoRA off CUDA needs F.grouped_mm (torch {torch.__version__})")
            odd = [lin.name for lin in base.linears if lin.in_features % 8 or lin.out_features % 8]
            if odd:
                raise ValueError(f"LoRA off CUDA needs layer sizes that are multiples of 8: {odd}")
        layers, rank = base.num_layers, self.rank
        self.a = {
            lin.name: torch.zeros(
                layers, max_loras, len(lin.parts) * rank, lin.in_features,
                dtype=dtype, device=device,
            )
            for lin in base.linears
        }  # fmt: skip
        self.b = {
            lin.name: torch.zeros(
                layers, max_loras, lin.out_features, rank, dtype=dtype, device=device
            )
            for lin in base.linears
        }

    def write(self, slot: int, adapter: HostAdapter) -> None:
        """Puts `adapter` in `slot`, replacing whatever was there."""
        self.clear(slot)
        for (layer, name), parts in adapter.weights.items():
            linear = self.base.linear(name)
            for part, (offset, weights) in enumerate(zip(linear.part_offsets, parts, strict=True)):
                if weights is None:
                    continue
                a, b = weights
                rank, size = a.shape[0], b.shape[0]
                start = part * self.rank
                self.a[name][layer, slot, start : start + rank].copy_(a, non_blocking=True)
                self.b[name][layer, slot, offset : offset + size, :rank].copy_(b, non_blocking=True)

    def clear(self, slot: int) -> None:
        for name in self.a:
            self.a[name][:, slot].zero_()
            self.b[name][:, slot].zero_()

    def layer(self, layer: int, name: str) -> tuple[torch.Tensor, torch.Tensor, LinearShape]:
        """This decoder layer's buffers for one engine linear: A [slots, parts * rank, in],
        B [slots, out, rank], and the linear's shape."""
        return self.a[name][layer], self.b[name][layer], self.base.linear(name)

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in (*self.a.values(), *self.b.values()))
