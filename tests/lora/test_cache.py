"""AdapterCache: host LRU, device slots with pins, counters, and their metrics; with real
peft adapters loaded into real DeviceSlots."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from prometheus_client import CollectorRegistry, generate_latest

from infleet.lora.base_model import BaseModelShape
from infleet.lora.cache import AdapterCache, NoFreeSlot
from infleet.lora.errors import AdapterError
from infleet.lora.host_weights import HostAdapter, load_adapter
from infleet.lora.metrics import LoRAMetrics
from infleet.lora.slots import DeviceSlots
from tests.lora.peft_adapters import ALL_LINEAR, AdapterSpec, peft_model, save_adapters, tiny_model

SPECS = tuple(AdapterSpec(f"ad{i}", 2 + 2 * i, 8, ALL_LINEAR) for i in range(4))


@pytest.fixture(scope="module")
def adapters(tmp_path_factory) -> tuple[BaseModelShape, dict[str, Path]]:
    base = tiny_model("llama")
    paths = save_adapters(peft_model(base, SPECS), SPECS, tmp_path_factory.mktemp("a"))
    return BaseModelShape.from_hf_config(base.config.to_dict()), paths


def make_cache(adapters, max_loras=2, max_cpu_loras=3):
    shape, _ = adapters
    slots = DeviceSlots(shape, max_loras, max_rank=8, dtype=torch.float32)
    cache: AdapterCache[Path, HostAdapter] = AdapterCache(
        max_loras, max_cpu_loras, lambda p: load_adapter(p, shape, 8, torch.float32), slots.write
    )
    return cache, slots


def slot_holds(slots: DeviceSlots, slot: int, adapter: HostAdapter) -> bool:
    (layer, name), parts = next(iter(adapter.weights.items()))
    a, _ = parts[0]
    return torch.equal(slots.a[name][layer, slot, : a.shape[0]], a)


def test_acquire_loads_evicts_lru_unpinned_and_counts(adapters):
    shape, paths = adapters
    cache, slots = make_cache(adapters)
    for name in ("ad0", "ad1", "ad2", "ad3"):
        cache.add(name, paths[name])
    assert cache.stats.host_loads == 4 and cache.stats.host_evictions == 1  # 3 fit in host
    s0 = cache.acquire("ad0")  # ad0 was evicted from host: read again from disk
    assert cache.stats.host_loads == 5
    s1 = cache.acquire("ad1")
    assert {s0, s1} == {0, 1}
    assert slot_holds(slots, s1, load_adapter(paths["ad1"], shape, 8, torch.float32))
    with pytest.raises(NoFreeSlot):
        cache.acquire("ad2")  # both slots pinned
    cache.release("ad0")
    assert cache.acquire("ad2") == s0  # ad0 was the unpinned one
    assert cache.slot_of("ad0") is None and cache.stats.device_evictions == 1
    assert cache.acquire("ad1") == s1 and cache.pins("ad1") == 2  # a hit: no load
    assert cache.stats.device_loads == 3


def test_bad_adapter_and_duplicate_name_leave_the_cache_as_it_was(adapters, tmp_path):
    _, paths = adapters
    cache, slots = make_cache(adapters)
    cache.add("ad0", paths["ad0"])
    slot = cache.acquire("ad0")
    before = [t.clone() for t in slots.a.values()]
    with pytest.raises(AdapterError, match="adapter 'ad0' is already loaded"):
        cache.add("ad0", paths["ad1"])
    with pytest.raises(AdapterError, match="does not exist"):
        cache.add("broken", tmp_path / "nowhere")
    assert cache.names() == ["ad0"] and cache.stats.load_failures == 1
    assert cache.slot_of("ad0") == slot and cache.pins("ad0") == 1
    assert all(torch.equal(a, b) for a, b in zip(before, slots.a.values(), strict=True))


def test_remove_refuses_a_pinned_adapter(adapters):
    _, paths = adapters
    cache, _ = make_cache(adapters)
    cache.add("ad0", paths["ad0"])
    cache.acquire("ad0")
    with pytest.raises(AdapterError, match="in use by 1 request"):
        cache.remove("ad0")
    cache.release("ad0")
    cache.remove("ad0")
    assert "ad0" not in cache
    with pytest.raises(AdapterError, match="'ad0' is not loaded"):
        cache.acquire("ad0")


def test_metrics_follow_the_cache(adapters):
    _, paths = adapters
    cache, _ = make_cache(adapters)
    registry = CollectorRegistry()
    metrics = LoRAMetrics(registry, "base", max_loras=2)
    for name in ("ad0", "ad1"):
        cache.add(name, paths[name])
        cache.acquire(name)
    metrics.record(cache.stats, running=["ad1", "ad0", "ad0"], waiting=["ad2"])
    metrics.record(cache.stats, running=["ad1", "ad0"], waiting=["ad3", "ad2"])
    text = generate_latest(registry).decode()
    info = re.findall(r"^infleet:lora_requests_info\{(.*)\} (\S+)$", text, re.M)
    assert len(info) == 1  # the previous label set is gone
    labels = dict(re.findall(r'(\w+)="([^"]*)"', info[0][0]))
    assert labels == {
        "running_lora_adapters": "ad0,ad1",
        "waiting_lora_adapters": "ad2,ad3",
        "max_lora": "2",
    }
    assert float(info[0][1]) > 1.7e9  # the time of the update, as vLLM sets it
    assert 'infleet:lora_loads_total{model_name="base",tier="host"} 2.0' in text
    assert 'infleet:lora_loads_total{model_name="base",tier="device"} 2.0' in text
    assert 'infleet:lora_load_failures_total{model_name="base"} 0.0' in text
