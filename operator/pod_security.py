"""Pods that pass Pod Security "restricted" by default, and the writable places each needs.

Every pod runs as a non-root user named by its engine kind (EngineProfile.run_as_user), with
RuntimeDefault seccomp, no privilege escalation, every capability dropped, and no service
account token unless the template asks for one. The stock vLLM, SGLang and TGI images run
as root and keep HOME (/root) and their caches there, so a non-root user needs a HOME it
may write: an emptyDir, with the caches under it, and another at /tmp
(docs/operator.md#secure-by-default says what each image writes and where that comes from).
"""

from __future__ import annotations

from typing import Any

HOME = "/home/engine"
TMP = "/tmp"
# KServe's storage-initializer image is built with `USER 1000` (python/storage-initializer.Dockerfile).
FETCHER_UID = 1000
WRITABLE_VOLUMES = {"home": HOME, "tmp": TMP}
# HOME for every Python cache (torch, Triton, FlashInfer, vLLM's own under ~/.cache);
# USER so getpass.getuser() (torch's compile cache names) works for a uid the image's
# /etc/passwd lacks; HF_HOME replaces TGI's /data, which only root may write.
ENGINE_ENV = {
    "HOME": HOME,
    "USER": "engine",
    "XDG_CACHE_HOME": f"{HOME}/.cache",
    "HF_HOME": f"{HOME}/.cache/huggingface",
}
CONTAINER_DEFAULTS: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}


def pod_security_context(uid: int) -> dict[str, Any]:
    """Restricted, as the engine kind's user (EngineProfile.run_as_user)."""
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        # Never chown a large model cache on every start.
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context(run_as_user: int | None = None) -> dict[str, Any]:
    context = {**CONTAINER_DEFAULTS, "capabilities": {"drop": ["ALL"]}}
    if run_as_user is not None:
        context["runAsUser"] = run_as_user
    return context


def engine_env() -> list[dict[str, str]]:
    return [{"name": name, "value": value} for name, value in ENGINE_ENV.items()]


def writable_volumes() -> list[dict[str, Any]]:
    return [{"name": name, "emptyDir": {}} for name in WRITABLE_VOLUMES]


def writable_mounts() -> list[dict[str, Any]]:
    return [{"name": name, "mountPath": path} for name, path in WRITABLE_VOLUMES.items()]
