"""The engine core's LoRA side (`--enable-lora`): adapters in device slots, the scheduler's
slot rule, and each step's token -> slot layout.

- Every adapted linear of the model gets a `LinearLoRA` hook over the device slots
  (lora/slots.py); the runner sets the step's LoRABatch around the forward, so model code
  never sees adapters.
- A request names its adapter by `AdapterRef` (engine/messages.py); the core reads it into
  its host cache when the first request for it arrives (lora/cache.py: an LRU of
  `--max-cpu-loras`), keyed by the load's id.
- The scheduler asks `refused` which waiting requests the slot rule holds back this step
  (lora/admission.py: never more distinct adapters running than `--max-loras`, never a
  starved adapter). A scheduled request pins its adapter's slot until it finishes or is
  preempted.
- Copying an adapter into a slot is queued with the step (`take_writes`) and done on the
  device thread before that step's forward: the device runs steps in order, so the step
  still in flight reads the slot's old adapter, and the host never waits for a copy.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import torch

from infleet.engine.core.runner import LoRAStep
from infleet.engine.core.sequence import Sequence
from infleet.engine.layers.linear import Linear
from infleet.engine.messages import AdapterRef, LoRAStats
from infleet.engine.model_config import ModelConfig
from infleet.lora.admission import WaitingLoRA, admit_by_adapter
from infleet.lora.apply import LinearLoRA
from infleet.lora.base_model import BaseModelShape
from infleet.lora.batch import LoRABatch
from infleet.lora.cache import AdapterCache
from infleet.lora.host_weights import HostAdapter, load_adapter
from infleet.lora.slots import DeviceSlots

SlotWrite = tuple[int, HostAdapter]


def base_shape_of(config: ModelConfig) -> BaseModelShape:
    """The adaptable linears of the engine's decoder: q/k/v/o everywhere, gate/up/down
    where every layer's MLP is dense (a MoE's experts take no adapters)."""
    return BaseModelShape.decoder(
        hidden_size=config.hidden_size,
        num_layers=config.num_layers,
        q_size=config.num_heads * config.head_dim,
        kv_size=config.num_kv_heads * config.head_dim,
        intermediate_size=None if config.moe is not None else config.intermediate_size,
    )


def attach(model: torch.nn.Module, slots: DeviceSlots) -> int:
    """Hooks every adapted linear of every decoder layer to its slot buffers; returns how
    many were hooked."""
    hooked = 0
    for i, layer in enumerate(model.model.layers):
        for linear in slots.base.linears:
            parent = layer.self_attn if hasattr(layer.self_attn, linear.name) else layer.mlp
            module = getattr(parent, linear.name)
            if not isinstance(module, Linear):
                raise TypeError(f"layer {i} {linear.name} is not an engine Linear")
            module.adapter = LinearLoRA(slots, i, linear.name)
            hooked += 1
    return hooked


class EngineLoRA:
    def __init__(
        self,
        model: torch.nn.Module,
        config: ModelConfig,
        *,
        max_loras: int,
        max_cpu_loras: int | None,
        max_rank: int,
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        self.shape = base_shape_of(config)
        self.max_loras, self.max_rank, self.dtype = max_loras, max_rank, dtype
        self.device = device
        self.slots = DeviceSlots(self.shape, max_loras, max_rank, dtype, device)
        attach(model, self.slots)
        self.cache: AdapterCache[str, HostAdapter] = AdapterCache(
            max_loras, max(max_cpu_loras or max_loras, max_loras), self._read, self._queue
        )
        self._writes: list[SlotWrite] = []
        self._held: dict[Sequence, str] = {}  # scheduled sequences pinning their adapter
        self._passed: Counter[Sequence] = Counter()  # steps the slot rule refused a sequence
        self._users: Counter[str] = Counter()  # live sequences per adapter
        self._unloaded: set[str] = set()  # forget once unused
        self._names: dict[str, str] = {}

    # -- adapters -----------------------------------------------------------------------

    def _read(self, path: str) -> HostAdapter:
        pin = self.device.type == "cuda"
        return load_adapter(Path(path), self.shape, self.max_rank, self.dtype, pin_memory=pin)

    def _queue(self, slot: int, weights: HostAdapter) -> None:
        self._writes.append((slot, weights))

    def add(self, seq: Sequence) -> None:
        """A new sequence's adapter, read on first use; AdapterError if it cannot be."""
        ref = seq.lora
        if ref is None:
            return
        key = _key(ref)
        if key not in self.cache:
            self.cache.add(key, ref.path)
            self._names[key] = ref.name
        self._users[key] += 1

    def unload(self, lora_id: int) -> None:
        key = str(lora_id)
        if key in self.cache:
            self._unloaded.add(key)
            self._forget_unused()

    def finish(self, seq: Sequence) -> None:
        """seq ended (or was dropped): its pin and use end now."""
        if seq.lora is None:
            return
        self.release(seq)
        self._passed.pop(seq, None)
        key = _key(seq.lora)
        self._users[key] -= 1
        if self._users[key] <= 0:
            del self._users[key]
            self._forget_unused()

    def release(self, seq: Sequence) -> None:
        key = self._held.pop(seq, None)
        if key is not None:
            self.cache.release(key)

    def _forget_unused(self) -> None:
        for key in [k for k in self._unloaded if not self._users.get(k)]:
            self._unloaded.discard(key)
            self.cache.remove(key)
            self._names.pop(key, None)

    # -- the step -----------------------------------------------------------------------

    def refused(self, running: Iterable[Sequence], waiting: list[Sequence]) -> set[Sequence]:
        """The waiting sequences the slot rule holds back this step (it counts them)."""
        rule = [WaitingLoRA(_key_of(s), self._passed[s]) for s in waiting]
        admitted = admit_by_adapter((_key_of(s) for s in running), rule, self.max_loras)
        held = {s for s, ok in zip(waiting, admitted, strict=True) if not ok}
        for seq in held:
            self._passed[seq] += 1
        return held

    def slots_for(self, seqs: list[Sequence], preempted: list[Sequence]) -> list[int]:
        """Each scheduled sequence's device slot (-1: the base model), pinning new ones."""
        for seq in preempted:
            self.release(seq)
        out = []
        for seq in seqs:
            if seq.lora is None:
                out.append(-1)
                continue
            key = self._held.get(seq)
            if key is None:
                key = self._held[seq] = _key(seq.lora)
                self._passed.pop(seq, None)
                out.append(self.cache.acquire(key))
            else:
                slot = self.cache.slot_of(key)
                assert slot is not None, "a pinned adapter left its slot"
                out.append(slot)
        return out

    def take_writes(self) -> list[SlotWrite]:
        writes, self._writes = self._writes, []
        return writes

    def write(self, writes: list[SlotWrite]) -> None:
        """On the device thread, before the forward of the step they came with."""
        for slot, weights in writes:
            self.slots.write(slot, weights)

    def batch(self, slice_slots: list[int], slice_lens: list[int]) -> LoRAStep | None:
        """The step's LoRABatch (each slice's tokens take its slot), with the slots."""
        if all(s < 0 for s in slice_slots):
            return None
        tokens = [s for s, n in zip(slice_slots, slice_lens, strict=True) for _ in range(n)]
        batch = LoRABatch.build(tokens, self.max_loras, self.device)
        return None if batch is None else (batch, self.slots)

    def stats(self, running: Iterable[Sequence], waiting: Iterable[Sequence]) -> LoRAStats:
        c = self.cache.stats
        return LoRAStats(
            max_loras=self.max_loras,
            running=sorted({s.lora.name for s in running if s.lora is not None}),
            waiting=sorted({s.lora.name for s in waiting if s.lora is not None}),
            host_loads=c.host_loads,
            device_loads=c.device_loads,
            host_evictions=c.host_evictions,
            device_evictions=c.device_evictions,
            load_failures=c.load_failures,
        )


def _key(ref: AdapterRef) -> str:
    return str(ref.id)


def _key_of(seq: Sequence) -> str | None:
    return None if seq.lora is None else _key(seq.lora)
