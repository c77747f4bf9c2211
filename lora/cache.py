"""Where each known adapter is: in host memory (an LRU of `max_cpu_loras`), in one of
`max_loras` device slots (an LRU among the unpinned), and how many requests pin it.

Bookkeeping only, generic over the weights: `read(source)` loads and checks an adapter
(host_weights.load_adapter in the engine), `to_slot(slot, weights)` copies it to the
device (DeviceSlots.write). A request pins its adapter from admission until its last step
has finished on the device, so no slot is overwritten under a step in flight; with the
admission rule (admission.py) the pinned adapters never outnumber the slots. One thread
(the engine core's loop) owns an AdapterCache.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from infleet.lora.errors import AdapterError

S = TypeVar("S")  # where an adapter is read from (a path)
W = TypeVar("W")  # its weights in host memory


@dataclass(slots=True)
class CacheStats:
    """Running totals (the metrics take deltas, so they can cross a process boundary)."""

    host_loads: int = 0  # adapters read into host memory
    device_loads: int = 0  # adapters copied into a device slot
    host_evictions: int = 0
    device_evictions: int = 0
    load_failures: int = 0  # reads that raised (bad or vanished files)


class NoFreeSlot(RuntimeError):
    """Every slot is pinned: the admission rule was bypassed."""


class AdapterCache(Generic[S, W]):
    def __init__(
        self,
        max_loras: int,
        max_cpu_loras: int,
        read: Callable[[S], W],
        to_slot: Callable[[int, W], None],
    ) -> None:
        if not 1 <= max_loras <= max_cpu_loras:
            raise ValueError(
                f"need 1 <= max_loras ({max_loras}) <= max_cpu_loras ({max_cpu_loras})"
            )
        self.max_loras, self.max_cpu_loras = max_loras, max_cpu_loras
        self._read, self._to_slot = read, to_slot
        self._sources: dict[str, S] = {}
        self._host: OrderedDict[str, W] = OrderedDict()
        self._device: OrderedDict[str, int] = OrderedDict()  # name -> slot, LRU first
        self._pins: dict[str, int] = {}
        self.stats = CacheStats()

    def add(self, name: str, source: S) -> None:
        """Registers an adapter, reading (and so checking) it now."""
        if name in self._sources:
            raise AdapterError("lora_name", f"adapter {name!r} is already loaded")
        self._put_host(name, self._load(source))
        self._sources[name] = source

    def remove(self, name: str) -> None:
        self._known(name)
        if self._pins.get(name):
            raise AdapterError(
                "lora_name", f"adapter {name!r} is in use by {self._pins[name]} request(s)"
            )
        del self._sources[name]
        self._host.pop(name, None)
        self._device.pop(name, None)  # its slot is free; no token maps to it any more

    def names(self) -> list[str]:
        return list(self._sources)

    def __contains__(self, name: object) -> bool:
        return name in self._sources

    def slot_of(self, name: str) -> int | None:
        return self._device.get(name)

    def pins(self, name: str) -> int:
        return self._pins.get(name, 0)

    def acquire(self, name: str) -> int:
        """Pins `name` in a device slot (loading it there if needed); returns the slot."""
        self._known(name)
        slot = self._device.get(name)
        if slot is None:
            slot = self._free_slot()
            self._to_slot(slot, self._host_weights(name))
            self.stats.device_loads += 1
            self._device[name] = slot
        self._device.move_to_end(name)
        self._pins[name] = self._pins.get(name, 0) + 1
        return slot

    def release(self, name: str) -> None:
        count = self._pins.get(name, 0)
        if count < 1:
            raise RuntimeError(f"adapter {name!r} released more often than acquired")
        self._pins[name] = count - 1

    def _known(self, name: str) -> None:
        if name not in self._sources:
            raise AdapterError("lora_name", f"adapter {name!r} is not loaded")

    def _load(self, source: S) -> W:
        try:
            return self._read(source)
        except Exception:
            self.stats.load_failures += 1
            raise

    def _host_weights(self, name: str) -> W:
        if name in self._host:
            self._host.move_to_end(name)
            return self._host[name]
        weights = self._load(self._sources[name])
        self._put_host(name, weights)
        return weights

    def _put_host(self, name: str, weights: W) -> None:
        self._host[name] = weights
        self.stats.host_loads += 1
        while len(self._host) > self.max_cpu_loras:
            self._host.popitem(last=False)
            self.stats.host_evictions += 1

    def _free_slot(self) -> int:
        used = set(self._device.values())
        free = next((s for s in range(self.max_loras) if s not in used), None)
        if free is not None:
            return free
        victim = next((n for n in self._device if not self._pins.get(n)), None)
        if victim is None:
            raise NoFreeSlot(f"all {self.max_loras} LoRA slots are pinned")
        self.stats.device_evictions += 1
        return self._device.pop(victim)
