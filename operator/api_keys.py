"""spec.engine.apiKeys rendered into each engine kind's own spelling; never a key's value.

Format `key`: the Secret's `api-key` reaches the engine as an env var from a secretKeyRef
(the kubelet resolves it; the rendered spec names only the Secret). Engines that read
their key from the environment get it there (infleet INFLEET_API_KEY, vLLM VLLM_API_KEY,
TGI API_KEY); SGLang reads only `--api-key`, so its flag is `--api-key=$(VAR)`, which the
kubelet expands. Format `tenants` (infleet only, CEL-checked): the Secret is mounted as a
directory, not a subPath, so the kubelet's symlink swap updates the file and the engine
reloads it. Every kind leaves /health open with a key, so the probes keep working.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from infleet.api import InferenceServiceSpec

if TYPE_CHECKING:  # engines.py imports this module for the infleet settings
    from infleet.operator.engines import EngineProfile

KEY = "api-key"  # the Secret's data key for format key
KEYS_FILE_KEY = "keys.yaml"  # ... for format tenants
KEYS_DIR = "/etc/infleet/api-keys"
KEYS_FILE = f"{KEYS_DIR}/{KEYS_FILE_KEY}"
VOLUME = "api-keys"


def api_key_env(spec: InferenceServiceSpec, profile: EngineProfile) -> list[dict[str, Any]]:
    keys = spec.engine.api_keys
    if keys is None or keys.format != "key":
        return []
    ref = {"secretKeyRef": {"name": keys.secret_name, "key": KEY}}
    return [{"name": profile.api_key_env, "valueFrom": ref}]


def api_key_args(spec: InferenceServiceSpec, profile: EngineProfile) -> list[str]:
    keys = spec.engine.api_keys
    if keys is None or keys.format != "key" or not profile.api_key_flag:
        return []
    return [f"--{profile.api_key_flag}=$({profile.api_key_env})"]


def api_keys_settings(spec: InferenceServiceSpec) -> dict[str, str]:
    """The infleet engine's config-file entry for format tenants."""
    keys = spec.engine.api_keys
    return {"api-keys-file": KEYS_FILE} if keys and keys.format == "tenants" else {}


def api_keys_volumes(spec: InferenceServiceSpec) -> list[dict[str, Any]]:
    keys = spec.engine.api_keys
    if keys is None or keys.format != "tenants":
        return []
    items = [{"key": KEYS_FILE_KEY, "path": KEYS_FILE_KEY}]
    return [{"name": VOLUME, "secret": {"secretName": keys.secret_name, "items": items}}]


def api_keys_mounts(spec: InferenceServiceSpec) -> list[dict[str, Any]]:
    if not api_keys_volumes(spec):
        return []
    return [{"name": VOLUME, "mountPath": KEYS_DIR, "readOnly": True}]
