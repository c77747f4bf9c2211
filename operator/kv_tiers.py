"""spec.engine.kvCache.dram / .nvme on the pod: memory, the NVMe volume, each engine's
flags and environment for its tiers (docs/kv_tiering.md, "On Kubernetes").

- dram raises the engine container's memory request and limit by the tier's size: the
  tier is host memory the engine allocates on top of what it needs anyway.
- nvme mounts a node-local volume at NVME_PATH: an emptyDir by default (it survives a
  container restart — crash, OOM kill — not the pod's deletion), with a sizeLimit above
  the tier's size, since the kubelet evicts a pod whose emptyDir outgrows its limit; a
  generic ephemeral volume from a storage class, or a hostPath that the platform policy
  lists (operator/guardrails.py checks every hostPath), as options.
"""

from __future__ import annotations

import math
from typing import Any

from infleet.api import InferenceServiceSpec
from infleet.api.quantity import parse_quantity, to_gib

NVME_PATH = "/var/cache/infleet/kv"
NVME_VOLUME = "kv-nvme"
# The volume's room above the tier: block files being written (.tmp), directories, and
# what a restarted engine finds before it trims the tier to its size.
NVME_HEADROOM = 0.05
NVME_HEADROOM_MIN = 1 << 30


def _mebibytes(nbytes: float) -> str:
    return f"{math.ceil(nbytes / 2**20)}Mi"


def tier_bytes(value: int | str | None) -> int:
    return 0 if value is None else int(parse_quantity(value))


def memory_with_tiers(spec: InferenceServiceSpec) -> str:
    """The engine container's memory: resources.memory plus the DRAM tier."""
    dram = tier_bytes(spec.engine.kv_cache.dram)
    if not dram:
        return str(spec.resources.memory)
    return _mebibytes(parse_quantity(spec.resources.memory) + dram)


def nvme_volume_size(spec: InferenceServiceSpec) -> str:
    nvme = tier_bytes(spec.engine.kv_cache.nvme)
    return _mebibytes(nvme + max(NVME_HEADROOM * nvme, NVME_HEADROOM_MIN))


def nvme_volumes(spec: InferenceServiceSpec) -> list[dict[str, Any]]:
    kv = spec.engine.kv_cache
    if kv.nvme is None:
        return []
    where = kv.nvme_volume
    if where is not None and where.host_path is not None:
        source: dict[str, Any] = {
            "hostPath": {"path": where.host_path.path, "type": "DirectoryOrCreate"}
        }
    elif where is not None and where.storage_class_name is not None:
        claim = {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": where.storage_class_name,
            "resources": {"requests": {"storage": nvme_volume_size(spec)}},
        }
        source = {"ephemeral": {"volumeClaimTemplate": {"spec": claim}}}
    else:
        source = {"emptyDir": {"sizeLimit": nvme_volume_size(spec)}}
    return [{"name": NVME_VOLUME, **source}]


def nvme_mounts(spec: InferenceServiceSpec) -> list[dict[str, Any]]:
    if spec.engine.kv_cache.nvme is None:
        return []
    return [{"name": NVME_VOLUME, "mountPath": NVME_PATH}]


# --- each engine's settings (operator/engines.py calls these) ---


def infleet_settings(spec: InferenceServiceSpec) -> dict[str, Any]:
    """--kv-dram-size / --kv-nvme-size in bytes (engine/args.py), for its config file."""
    kv = spec.engine.kv_cache
    out: dict[str, Any] = {}
    if kv.dram is not None:
        out["kv-dram-size"] = tier_bytes(kv.dram)
    if kv.nvme is not None:
        out["kv-nvme-size"] = tier_bytes(kv.nvme)
    return out


def infleet_mount_args(spec: InferenceServiceSpec) -> list[str]:
    """--kv-nvme-path goes on the command line, beside --host: it names where the pod
    mounts the volume, a fact of the pod rather than an engine setting."""
    return [f"--kv-nvme-path={NVME_PATH}"] if spec.engine.kv_cache.nvme is not None else []


def vllm_settings(spec: InferenceServiceSpec) -> dict[str, Any]:
    """vLLM's KV offloading (`--kv-offloading-backend`, `--kv-offloading-size` in GiB of
    CPU memory): its native backend for DRAM alone; LMCache when a disk tier is asked
    for (the disk comes through LMCache's environment, vllm_env)."""
    kv = spec.engine.kv_cache
    if kv.dram is None and kv.nvme is None:
        return {}
    return {
        "kv-offloading-backend": "lmcache" if kv.nvme is not None else "native",
        "kv-offloading-size": to_gib(kv.dram if kv.dram is not None else "1Gi"),
        "disable-hybrid-kv-cache-manager": True,
    }


def vllm_env(spec: InferenceServiceSpec) -> list[dict[str, str]]:
    kv = spec.engine.kv_cache
    if kv.nvme is None:
        return []
    return [
        {"name": "LMCACHE_LOCAL_DISK", "value": f"file://{NVME_PATH}/"},
        {"name": "LMCACHE_MAX_LOCAL_DISK_SIZE", "value": str(to_gib(kv.nvme))},
    ]


def sglang_settings(spec: InferenceServiceSpec) -> dict[str, Any]:
    """SGLang's hierarchical cache: host memory (`--hicache-size`, GB) and its file
    storage backend under the NVMe volume (directory from sglang_env)."""
    kv = spec.engine.kv_cache
    out: dict[str, Any] = {}
    if kv.dram is not None or kv.nvme is not None:
        out["enable-hierarchical-cache"] = True
    if kv.dram is not None:
        out["hicache-size"] = to_gib(kv.dram)
    if kv.nvme is not None:
        out["hicache-storage-backend"] = "file"
        out["hicache-write-policy"] = "write_through"
    return out


def sglang_env(spec: InferenceServiceSpec) -> list[dict[str, str]]:
    if spec.engine.kv_cache.nvme is None:
        return []
    return [{"name": "SGLANG_HICACHE_FILE_BACKEND_STORAGE_DIR", "value": NVME_PATH}]


TIER_ENV = {"vllm": vllm_env, "sglang": sglang_env}


def tier_env(spec: InferenceServiceSpec, kind: str) -> list[dict[str, str]]:
    env = TIER_ENV.get(kind)
    return env(spec) if env is not None else []
