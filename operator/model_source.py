"""Where the engine finds the weights, and how they get there.

hf://, s3:// and http(s):// are downloaded by an init container (KServe's storage
initializer image: args SOURCE DEST, hf://org/model:revision) with the credentials of
`model.credentialsSecretRef` (operator/model_credentials.py). Into an emptyDir per pod,
sized by `model.size`; or, with `model.cache`, into a folder per model on a shared claim
or node directory: a pod finds a complete copy there and downloads nothing, and
concurrent downloads never mix (each writes its own folder and renames it into place).
pvc://CLAIM/path mounts the claim read-only; builtin:NAME is inside the infleet engine.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from infleet.api import ModelSpec
from infleet.operator.errors import SpecError
from infleet.operator.model_credentials import credential_env
from infleet.operator.pod_security import FETCHER_UID, container_security_context

MODEL_DIR = "/mnt/models"
CACHE_DIR = "/mnt/model-cache"  # the shared cache, in the fetch container only
CACHE_VOLUME = "model-cache"
DEFAULT_FETCHER_IMAGE = "kserve/storage-initializer:v0.16.0"
FETCHER_ENTRYPOINT = "/storage-initializer/scripts/initializer-entrypoint"
DEFAULT_MODEL_SIZE = "100Gi"
ARCHIVES = (".tar", ".tar.gz", ".tgz", ".zip")
COMPLETE = ".infleet-complete"
# argv: source, cache root, the model's folder. A finished copy carries COMPLETE; a
# download goes to a folder of its own, renamed into place (a rename onto a folder
# another pod already finished fails, and that copy serves). Python, not sh: the fetcher
# image has it, and a shell would drop the `<host>-headers` credential variable (a name
# with a dash is no shell variable).
CACHED_FETCH = f"""import os, shutil, subprocess, sys
src, root, folder = sys.argv[1:4]
dest = os.path.join(root, folder)
if os.path.exists(os.path.join(dest, "{COMPLETE}")):
    sys.exit(print("model found in the cache:", folder))
partial = dest + ".partial-" + os.environ["POD_NAME"]
shutil.rmtree(partial, ignore_errors=True)
code = subprocess.call(["{FETCHER_ENTRYPOINT}", src, partial])
if code:
    sys.exit(code)
open(os.path.join(partial, "{COMPLETE}"), "w").close()
try:
    os.rename(partial, dest)
except OSError:
    shutil.rmtree(partial, ignore_errors=True)
"""


@dataclass(frozen=True, slots=True)
class ModelSource:
    path: str  # what the engine is told to load
    served_name: str
    builtin: bool = False
    init_containers: list[dict[str, Any]] = field(default_factory=list)
    volumes: list[dict[str, Any]] = field(default_factory=list)
    mounts: list[dict[str, Any]] = field(default_factory=list)


def _default_served_name(model: ModelSpec) -> str:
    scheme, _, rest = model.uri.partition("://")
    if model.uri.startswith("builtin:"):
        return model.uri.removeprefix("builtin:")
    if scheme == "hf":
        return rest  # org/model: the name clients already know
    stem = rest.rstrip("/").rsplit("/", 1)[-1]
    return stem.removesuffix(".gguf") or rest


def cache_folder(source: str) -> str:
    """The model's folder in a shared cache: readable, and unique per source."""
    stem = re.sub(r"[^a-z0-9]+", "-", source.lower().partition("://")[2]).strip("-")[-40:]
    return f"{stem.strip('-')}-{hashlib.sha256(source.encode()).hexdigest()[:12]}"


def _fetch_container(model: ModelSpec, source: str, image: str) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "fetch-model",
        "image": image,
        "args": [source, MODEL_DIR],
        "env": credential_env(model),
        "volumeMounts": [{"name": CACHE_VOLUME, "mountPath": MODEL_DIR}],
        "resources": {
            "requests": {"cpu": "100m", "memory": "100Mi"},
            "limits": {"cpu": "1", "memory": "1Gi"},
        },
        # The log's tail becomes the status message when the download fails.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": container_security_context(FETCHER_UID),
    }
    if model.cache is not None:
        pod_name = {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
        container["command"] = ["python3", "-c", CACHED_FETCH]
        container["args"] = [source, CACHE_DIR, cache_folder(source)]
        container["env"] = [pod_name, *container["env"]]
        container["volumeMounts"] = [{"name": CACHE_VOLUME, "mountPath": CACHE_DIR}]
    return container


def _cache_volume(model: ModelSpec) -> dict[str, Any]:
    cache = model.cache
    if cache is None:
        return {
            "name": CACHE_VOLUME,
            "emptyDir": {"sizeLimit": str(model.size or DEFAULT_MODEL_SIZE)},
        }
    if cache.persistent_volume_claim is not None:
        claim = {"claimName": cache.persistent_volume_claim.claim_name}
        return {"name": CACHE_VOLUME, "persistentVolumeClaim": claim}
    assert cache.host_path is not None  # the CRD and the model allow exactly one
    return {
        "name": CACHE_VOLUME,
        "hostPath": {"path": cache.host_path.path, "type": "DirectoryOrCreate"},
    }


def _fetch(model: ModelSpec, fetcher_image: str) -> ModelSource:
    scheme, _, rest = model.uri.partition("://")
    source = model.uri
    if model.revision:
        if scheme != "hf":
            raise SpecError("model.revision", "a revision applies to hf:// models only")
        source = f"{model.uri}:{model.revision}"
    # A single file lands as that file; a repository, a prefix or an archive (unpacked by
    # the fetcher) lands as a folder.
    path, file_name = MODEL_DIR, rest.rstrip("/").rsplit("/", 1)[-1]
    single_file = scheme in ("http", "https") or rest.endswith(".gguf")
    if single_file and not file_name.endswith(ARCHIVES):
        path = f"{MODEL_DIR}/{file_name}"
    mount: dict[str, Any] = {"name": CACHE_VOLUME, "mountPath": MODEL_DIR, "readOnly": True}
    if model.cache is not None:
        mount["subPath"] = cache_folder(source)
    return ModelSource(
        path=path,
        served_name=model.name or _default_served_name(model),
        init_containers=[_fetch_container(model, source, fetcher_image)],
        volumes=[_cache_volume(model)],
        mounts=[mount],
    )


def resolve_model(model: ModelSpec, fetcher_image: str = DEFAULT_FETCHER_IMAGE) -> ModelSource:
    if model.uri.startswith("builtin:"):
        if model.revision:
            raise SpecError("model.revision", "a revision applies to hf:// models only")
        return ModelSource(model.uri, model.name or _default_served_name(model), builtin=True)
    if model.uri.startswith("pvc://"):
        if model.revision:
            raise SpecError("model.revision", "a revision applies to hf:// models only")
        claim, _, sub_path = model.uri.removeprefix("pvc://").partition("/")
        return ModelSource(
            path=f"{MODEL_DIR}/{sub_path}".rstrip("/"),
            served_name=model.name or _default_served_name(model),
            volumes=[
                {
                    "name": CACHE_VOLUME,
                    "persistentVolumeClaim": {"claimName": claim, "readOnly": True},
                }
            ],
            mounts=[{"name": CACHE_VOLUME, "mountPath": MODEL_DIR, "readOnly": True}],
        )
    return _fetch(model, fetcher_image)
