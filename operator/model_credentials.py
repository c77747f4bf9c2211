"""The model fetch's credentials: env vars that reference the tenant's Secret, never its values.

They follow what KServe's storage initializer reads (kserve_storage.Storage): HF_TOKEN for
hf:// (huggingface_hub), the AWS variables for s3:// (boto3), and for http(s):// a JSON
map of headers in the variable `<host>-headers`, built here from the Secret's
BEARER_TOKEN by Kubernetes' own `$(VAR)` expansion. Only the fetch container gets them.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlparse

from infleet.api import ModelSpec

BEARER = "BEARER_TOKEN"
REQUIRED = {"hf": ("HF_TOKEN",), "s3": ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
REQUIRED |= {"http": (BEARER,), "https": (BEARER,)}
OPTIONAL = {"s3": ("AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL")}


def _from_secret(secret: str, key: str, optional: bool) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": secret, "key": key}
    if optional:
        ref["optional"] = True
    return {"name": key, "valueFrom": {"secretKeyRef": ref}}


def credential_env(model: ModelSpec) -> list[dict[str, Any]]:
    """The fetch container's env for `model.credentialsSecretRef` ([] without one)."""
    if model.credentials_secret_ref is None:
        return []
    secret = model.credentials_secret_ref.name
    scheme = model.uri.partition("://")[0]
    env = [_from_secret(secret, key, False) for key in REQUIRED[scheme]]
    env += [_from_secret(secret, key, True) for key in OPTIONAL.get(scheme, ())]
    if scheme in ("http", "https"):
        # Expanded by the kubelet from the variable above; the rendered spec holds no token.
        headers = json.dumps({"Authorization": f"Bearer $({BEARER})"})
        env.append({"name": f"{urlparse(model.uri).hostname}-headers", "value": headers})
    return env
