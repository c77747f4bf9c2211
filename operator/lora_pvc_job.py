"""The upload Job of a pvc:// adapter, and the Secret holding its one-time token.

`pvc://CLAIM/path/to/adapter` names a claim in the adapter's own namespace (the tenant's)
and a directory or archive on it. Only a pod of that namespace can mount the claim, so
the controller creates there, both owned by the LoRAAdapter (same namespace: owner
references work, and deleting the adapter deletes them):

- the Secret `<adapter>-lora-upload` with the token (operator/lora_upload.py), which the
  Job reads by reference (`secretKeyRef`): never in an argument, the status or a log;
- the Job `<adapter>-lora-upload`: one pod of the operator's image running
  `infleet lora-upload` (operator/lora_uploader.py), the claim mounted read-only,
  Pod Security "restricted", no service account token, a deadline and two retries.

Their names carry a hash of the adapter's generation, so a new generation makes a new
Job and the old one's pod cannot spend the new token. Pure: spec in, objects out.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from infleet.api import GROUP, VERSION
from infleet.operator.lora_uploader import TOKEN_ENV
from infleet.operator.pod_security import container_security_context, pod_security_context

Obj = dict[str, Any]
TOKEN_KEY = "token"
CLAIM_DIR = "/adapter-claim"
OPERATOR_UID = 65532  # the operator image's user (charts/infleet-operator/values.yaml)
BACKOFF_LIMIT = 2
DEADLINE_S = 600  # a stuck mount or store fails the Job instead of holding it forever
TTL_S = 3600  # a finished Job lingers for `kubectl describe`, then goes
LABEL = f"{GROUP}/lora-upload"


class PvcUriError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class PvcSource:
    claim: str
    path: str  # inside the claim, no leading "/"; "" is the claim's root


def parse_pvc_uri(uri: str) -> PvcSource:
    """`pvc://CLAIM[/path]`; PvcUriError naming what is wrong."""
    rest = uri.removeprefix("pvc://")
    claim, _, path = rest.partition("/")
    parts = [p for p in path.split("/") if p]
    if not claim:
        raise PvcUriError("uri: pvc:// needs a claim name: pvc://CLAIM/path/to/adapter")
    if ".." in parts:
        raise PvcUriError("uri: a pvc:// path may not contain '..'")
    return PvcSource(claim, "/".join(parts))


def upload_name(adapter: str, generation: int | None) -> str:
    """`<adapter>-lora-upload-<hash>`, within a Job's 63 characters (its pods' label)."""
    tag = hashlib.sha256(f"{adapter}/{generation}".encode()).hexdigest()[:6]
    return f"{adapter[: 63 - 19].rstrip('-.')}-lora-upload-{tag}"


def _meta(adapter: Obj, name: str) -> Obj:
    meta = adapter["metadata"]
    owner = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "LoRAAdapter",
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
    }
    return {
        "name": name,
        "namespace": meta["namespace"],
        "labels": {LABEL: meta["name"]},
        "ownerReferences": [owner],
    }


def render_upload_secret(adapter: Obj, token: str) -> Obj:
    name = upload_name(adapter["metadata"]["name"], adapter["metadata"].get("generation"))
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(adapter, name),
        "type": "Opaque",
        "stringData": {TOKEN_KEY: token},
    }


def render_upload_job(adapter: Obj, source: PvcSource, image: str, store_url: str) -> Obj:
    name = upload_name(adapter["metadata"]["name"], adapter["metadata"].get("generation"))
    token = {"secretKeyRef": {"name": name, "key": TOKEN_KEY}}
    container = {
        "name": "upload",
        "image": image,
        "command": ["infleet", "lora-upload"],
        "args": [f"--source={CLAIM_DIR}/{source.path}".rstrip("/"), f"--store={store_url}"],
        "env": [{"name": TOKEN_ENV, "valueFrom": token}],
        "volumeMounts": [{"name": "claim", "mountPath": CLAIM_DIR, "readOnly": True}],
        # The adapter is held in memory while it is packed: tens of MB, typically.
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "2Gi"}},
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": container_security_context(),
    }
    # No fsGroup: it would chown the tenant's volume; the files need only be readable.
    context = {
        k: v for k, v in pod_security_context(OPERATOR_UID).items() if not k.startswith("fsGroup")
    }
    claim = {"claimName": source.claim, "readOnly": True}
    pod = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": context,
        "containers": [container],
        "volumes": [{"name": "claim", "persistentVolumeClaim": claim}],
    }
    meta = _meta(adapter, name)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": {
            "backoffLimit": BACKOFF_LIMIT,
            "activeDeadlineSeconds": DEADLINE_S,
            "ttlSecondsAfterFinished": TTL_S,
            "template": {"metadata": {"labels": dict(meta["labels"])}, "spec": pod},
        },
    }
