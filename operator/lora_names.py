"""Names of what the operator creates for LoRA (pinned in docs/lora-onboarding.md)."""

from __future__ import annotations

API_KEY = "api-key"  # data key of a tenant's API key Secret
KEYS_FILE = "keys.yaml"  # data key of the API keys ConfigMap (api/tenants.py format)
# The lora-sync sidecar's copy of spec.engine.apiKeys' key, to call its engine (the admin
# key's variable is operator/admin_key.py's).
ENGINE_KEY_ENV = "INFLEET_ENGINE_API_KEY"
SYNC_PORT_NAME = "lora-sync"  # the sidecar's container port; the controller pushes there


def set_name(service: str) -> str:
    """The adapter set ConfigMap, in the service's namespace."""
    return f"{service}-lora"


def api_key_secret_name(service: str) -> str:
    """A tenant's API key Secret, in the tenant's namespace."""
    return f"{service}-api-key"


def api_keys_name(service: str) -> str:
    """The tenants' key hashes ConfigMap, in the service's namespace."""
    return f"{service}-api-keys"
