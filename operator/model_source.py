"""Where the engine finds the weights, and how they get there.

hf://, s3:// and https:// are downloaded by an init container (KServe's storage
initializer image: args SOURCE DEST, hf://org/model:revision) into an emptyDir cache;
pvc://CLAIM/path mounts the claim read-only; builtin:NAME is inside the infleet engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from infleet.api import ModelSpec
from infleet.operator.errors import SpecError

MODEL_DIR = "/mnt/models"
CACHE_VOLUME = "model-cache"
DEFAULT_FETCHER_IMAGE = "kserve/storage-initializer:v0.15.2"


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


def _fetch(model: ModelSpec, fetcher_image: str) -> ModelSource:
    scheme, _, rest = model.uri.partition("://")
    source = model.uri
    if model.revision:
        if scheme != "hf":
            raise SpecError("model.revision", "a revision applies to hf:// models only")
        source = f"{model.uri}:{model.revision}"
    # A single .gguf file lands as that file; a repository or prefix lands as a folder.
    path = MODEL_DIR
    if scheme == "https" or rest.endswith(".gguf"):
        path = f"{MODEL_DIR}/{rest.rstrip('/').rsplit('/', 1)[-1]}"
    init = {
        "name": "fetch-model",
        "image": fetcher_image,
        "args": [source, MODEL_DIR],
        "volumeMounts": [{"name": CACHE_VOLUME, "mountPath": MODEL_DIR}],
        "resources": {
            "requests": {"cpu": "100m", "memory": "100Mi"},
            "limits": {"cpu": "1", "memory": "1Gi"},
        },
    }
    return ModelSource(
        path=path,
        served_name=model.name or _default_served_name(model),
        init_containers=[init],
        volumes=[{"name": CACHE_VOLUME, "emptyDir": {}}],
        mounts=[{"name": CACHE_VOLUME, "mountPath": MODEL_DIR, "readOnly": True}],
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
