"""How a container of a Pod becomes a local process: command, env, volumes, cwd.

Images are ignored: the command runs from this machine's PATH (the venv's bin first).
Volume mount paths cannot exist here, so each mount gets a local directory and every
command/args/env/workingDir string that names a mount path (as a whole word, e.g.
`--config=/etc/infleet/engine.yaml`) is rewritten to that directory; the map is also
given to the process as `INFLEET_LOCALPLANE_MOUNTS` (JSON). Paths inside files are not
rewritten.
"""

from __future__ import annotations

import base64
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from infleet.api.quantity import parse_quantity
from infleet.localplane.images import known

Obj = dict[str, Any]
_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class ConfigError(Exception):
    """CreateContainerConfigError: a referenced ConfigMap/Secret/key is missing."""


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: unknown references stay as written, `$$` escapes."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _VAR.sub(sub, text)


def _field_ref(pod: Obj, path: str) -> str:
    meta, spec, status = pod["metadata"], pod["spec"], pod.get("status", {})
    if m := re.match(r"metadata\.(labels|annotations)\['(.+)'\]$", path):
        return (meta.get(m.group(1)) or {}).get(m.group(2), "")
    table = {
        "metadata.name": meta["name"],
        "metadata.namespace": meta["namespace"],
        "metadata.uid": meta["uid"],
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
        "status.hostIP": status.get("hostIP", ""),
        "status.podIP": status.get("podIP", ""),
        "status.podIPs": status.get("podIP", ""),
    }
    if path not in table:
        raise ConfigError(f"unsupported fieldRef {path!r}")
    return table[path]


def _resource_ref(container: Obj, ref: Obj, node: Obj) -> str:
    resource = ref["resource"]  # e.g. limits.cpu, requests.memory
    kind, _, name = resource.partition(".")
    res = container.get("resources") or {}
    value = (res.get(kind) or {}).get(name) or (res.get("limits") or {}).get(name)
    if value is None:
        value = (node.get("status", {}).get("allocatable") or {}).get(name, "0")
    divisor = parse_quantity(ref.get("divisor", "1"))
    amount = parse_quantity(value) / divisor
    return str(int(-(-amount // 1)))  # rounded up, as the kubelet does


def _lookup(api: Any, ns: str, kind: str, ref: Obj, key: str | None) -> dict[str, str] | str | None:
    plural = "configmaps" if kind == "configMap" else "secrets"
    obj = api.store.peek(("", plural), ns, ref.get("name", ""))
    optional = ref.get("optional", False)
    if obj is None:
        if optional:
            return None
        raise ConfigError(f'{kind} "{ref.get("name")}" not found')
    data = dict(obj.get("data") or {})
    if plural == "secrets":
        data = {k: base64.b64decode(v).decode() for k, v in data.items()}
    if key is None:
        return data
    if key not in data:
        if optional:
            return None
        raise ConfigError(f"couldn't find key {key} in {kind} {ns}/{ref.get('name')}")
    return data[key]


def build_env(api: Any, pod: Obj, container: Obj, node: Obj, api_url: str) -> dict[str, str]:
    host, _, port = api_url.split("://", 1)[-1].partition(":")
    venv_bin = str(Path(sys.executable).parent)
    env = {
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": os.environ.get("HOME", "/tmp"),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "HOSTNAME": pod["metadata"]["name"],
        "KUBERNETES_SERVICE_HOST": host,
        "KUBERNETES_SERVICE_PORT": port or "80",
    }
    ns = pod["metadata"]["namespace"]
    for source in container.get("envFrom") or []:
        for kind in ("configMap", "secret"):
            ref = source.get(f"{kind}Ref")
            if ref is not None:
                data = _lookup(api, ns, kind, ref, None) or {}
                env.update({source.get("prefix", "") + k: v for k, v in data.items()})  # type: ignore[union-attr]
    for var in container.get("env") or []:
        if "value" in var or "valueFrom" not in var:
            env[var["name"]] = expand(str(var.get("value", "")), env)
            continue
        src = var["valueFrom"]
        if "fieldRef" in src:
            value: Any = _field_ref(pod, src["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in src:
            value = _resource_ref(container, src["resourceFieldRef"], node)
        elif "configMapKeyRef" in src:
            value = _lookup(
                api, ns, "configMap", src["configMapKeyRef"], src["configMapKeyRef"]["key"]
            )
        elif "secretKeyRef" in src:
            value = _lookup(api, ns, "secret", src["secretKeyRef"], src["secretKeyRef"]["key"])
        else:
            raise ConfigError(f"env {var['name']}: unsupported valueFrom {sorted(src)}")
        if value is not None:
            env[var["name"]] = str(value)
    return env


def _write_items(api: Any, ns: str, kind: str, ref: Obj, path: Path) -> None:
    """A configMap or secret (volume or projected source) as files under `path`."""
    if kind == "secret":
        ref = {**ref, "name": ref.get("secretName", ref.get("name", ""))}
    data = _lookup(api, ns, kind, ref, None) or {}
    items = ref.get("items") or [{"key": k, "path": k} for k in data]  # type: ignore[union-attr]
    for item in items:
        if item["key"] in data:  # type: ignore[operator]
            target = path / item["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(data[item["key"]])  # type: ignore[index]


def _write_projected(api: Any, pod: Obj, sources: list[Obj], token: str, path: Path) -> None:
    """A projected volume: configMaps, secrets, the pod's namespace and a service account
    token. The plane has one bearer token (credentials.py), so every pod's service account
    token is that one: RBAC is not emulated, a real cluster's is what the chart tests."""
    ns = pod["metadata"]["namespace"]
    for source in sources:
        for kind in ("configMap", "secret"):
            if kind in source:
                _write_items(api, ns, kind, source[kind], path)
        if "serviceAccountToken" in source:
            (path / source["serviceAccountToken"]["path"]).write_text(token)
        for item in (source.get("downwardAPI") or {}).get("items") or []:
            if "fieldRef" in item:
                target = path / item["path"]
                target.write_text(str(_field_ref(pod, item["fieldRef"]["fieldPath"])))


def claim_dir(claims: Path, namespace: str, claim: str) -> Path:
    """Where the emulated volume of PersistentVolumeClaim `namespace/claim` lives: one
    local directory per claim, made on first use (no provisioner, no capacity, no access
    modes: a claim that exists is bound, and its files outlive every pod)."""
    return claims / namespace / claim


def prepare_volumes(
    api: Any, pod: Obj, root: Path, token: str = "", claims: Path | None = None
) -> dict[str, Path]:
    """Materialize the pod's volumes under `root`; returns volume name -> directory.
    `token`: what a projected service account token holds; `claims`: where the
    persistentVolumeClaim volumes live (claim_dir)."""
    dirs: dict[str, Path] = {}
    ns = pod["metadata"]["namespace"]
    for vol in pod["spec"].get("volumes") or []:
        path = root / vol["name"]
        path.mkdir(parents=True, exist_ok=True)
        if "hostPath" in vol:
            dirs[vol["name"]] = Path(vol["hostPath"]["path"])
            continue
        for kind in ("configMap", "secret"):
            if kind in vol:
                _write_items(api, ns, kind, vol[kind], path)
        if "projected" in vol:
            _write_projected(api, pod, vol["projected"].get("sources") or [], token, path)
        if "persistentVolumeClaim" in vol:
            dirs[vol["name"]] = _claim(api, ns, vol, claims)
            continue
        dirs[vol["name"]] = path
    return dirs


def _claim(api: Any, ns: str, vol: Obj, claims: Path | None) -> Path:
    name = vol["persistentVolumeClaim"]["claimName"]
    if claims is None:
        raise ConfigError(f"volume {vol['name']}: persistentVolumeClaim needs a kubelet workdir")
    if api.store.peek(("", "persistentvolumeclaims"), ns, name) is None:
        raise ConfigError(f'persistentvolumeclaim "{name}" not found')
    path = claim_dir(claims, ns, name)
    path.mkdir(parents=True, exist_ok=True)
    return path


def mount_map(container: Obj, volumes: dict[str, Path]) -> dict[str, str]:
    out = {}
    for m in container.get("volumeMounts") or []:
        if m["name"] in volumes:
            local = volumes[m["name"]] / m.get("subPath", "")
            out[m["mountPath"].rstrip("/") or "/"] = str(local)
    return out


def rewrite_paths(text: str, mounts: dict[str, str]) -> str:
    """One pass, longest mount path first, so a local directory that was just put in
    (itself under, say, /tmp) is never rewritten again by a shorter mount path."""
    if not mounts:
        return text
    paths = "|".join(re.escape(m) for m in sorted(mounts, key=len, reverse=True))
    pattern = r"(?<![\w./-])(" + paths + r")(?=/|$|[^\w.-])"
    return re.sub(pattern, lambda m: mounts[m.group(1)], text)


def command_line(container: Obj, env: dict[str, str], mounts: dict[str, str]) -> list[str]:
    image = known(container.get("image", ""))
    command = container.get("command") or (list(image.entrypoint) if image else [])
    if not command:
        raise ConfigError(
            "the local kubelet runs only containers with a command "
            "(images are ignored, so an image's entrypoint is unknown)"
        )
    argv = [*command, *(container.get("args") or [])]
    return [rewrite_paths(expand(a, env), mounts) for a in argv]


def mounts_env(mounts: dict[str, str]) -> dict[str, str]:
    return {"INFLEET_LOCALPLANE_MOUNTS": json.dumps(mounts)} if mounts else {}
