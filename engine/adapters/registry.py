"""The adapters this engine knows, by served name: checked against the base model first.

Every adapter is a directory on local disk (inside `--lora-dir`) holding the two PEFT
files; `add` checks it with lora/'s torch-free checks against the shape of the model this
engine serves (`inspect_adapter`), so an adapter trained for another base model, one over
`--max-lora-rank` or a corrupt one is refused with an AdapterError naming the field, and
the registry is unchanged.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

from infleet.engine.messages import AdapterRef, CoreReady
from infleet.lora.adapter_dir import inspect_adapter
from infleet.lora.base_model import BaseModelShape
from infleet.lora.errors import AdapterError
from infleet.lora.host_weights import load_adapter
from infleet.lora.manifest import AdapterManifest


class AdapterLimit(AdapterError):
    """The engine holds as many adapters as it may: not the adapter's fault (409)."""


@dataclass(frozen=True, slots=True)
class Adapter:
    name: str  # the served name: what clients send as `model`
    root: str  # the lora_path it was loaded from (a directory or a store URL)
    path: Path  # its local directory
    manifest: AdapterManifest
    tenant: str | None  # whose it is (None: the platform's, visible to every caller)
    id: int  # this load's id: a name loaded again is another adapter to the core's caches

    @property
    def ref(self) -> AdapterRef:
        """How requests name it to the engine core."""
        return AdapterRef(self.name, str(self.path), self.id)


def base_shape(ready: CoreReady) -> BaseModelShape:
    """The base model's shape as the core reported it (the API process has no weights)."""
    return BaseModelShape.decoder(
        hidden_size=ready.hidden_size,
        num_layers=ready.num_layers,
        q_size=ready.q_size,
        kv_size=ready.kv_size,
        intermediate_size=ready.intermediate_size or None,  # 0: MoE, attention only
    )


class AdapterRegistry:
    def __init__(self, base: BaseModelShape, max_rank: int, lora_dir: Path, limit: int) -> None:
        self.base, self.max_rank, self.lora_dir, self.limit = base, max_rank, lora_dir, limit
        self._adapters: dict[str, Adapter] = {}
        self._guard = threading.Lock()
        self._ids = itertools.count(1)

    def add(
        self,
        name: str,
        root: str,
        path: Path,
        tenant: str | None = None,
        *,
        inside_lora_dir: bool = True,
    ) -> Adapter:
        """Checks and registers; AdapterError when refused (nothing changes then).
        `inside_lora_dir`: its files must resolve inside --lora-dir (runtime loads)."""
        lora_dir = self.lora_dir if inside_lora_dir else None
        manifest = inspect_adapter(path, self.base, self.max_rank, lora_dir=lora_dir)
        # The values too (NaN, a payload the header misdescribes): refused here with a
        # 400, not later when the core reads them for a request.
        load_adapter(path, self.base, self.max_rank, torch.float32, lora_dir=lora_dir)
        with self._guard:
            if name in self._adapters:
                raise AdapterError("lora_name", f"an adapter named {name!r} is already loaded")
            if len(self._adapters) >= self.limit:
                raise AdapterLimit(
                    "lora_name",
                    f"{self.limit} adapters are loaded, the most --max-cpu-loras allows",
                )
            adapter = Adapter(name, root, path, manifest, tenant, next(self._ids))
            self._adapters[name] = adapter
            return adapter

    def remove(self, name: str) -> Adapter | None:
        with self._guard:
            return self._adapters.pop(name, None)

    def get(self, name: str) -> Adapter | None:
        with self._guard:
            return self._adapters.get(name)

    def all(self) -> list[Adapter]:
        with self._guard:
            return sorted(self._adapters.values(), key=lambda a: a.name)
