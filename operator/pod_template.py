"""spec.template merged into a rendered pod template, with strategic-merge semantics.

Lists merge by their Kubernetes merge keys (containers, init containers, volumes, env and
image pull secrets by name; volume mounts by mountPath), maps key by key, the template's
value over a default (security contexts). What the operator owns wins, and a template
that tries to change it is refused (`TemplateConflict`, naming the field): the engine
container's command, image, ports, probes and lifecycle, its cpu/memory/GPU resources
(spec.resources), the pool's placement (required node affinity, spot selectors and
tolerations on the dedicated pool), the selector labels, and every volume, mount and
env var the operator renders.
"""

from __future__ import annotations

import copy
from typing import Any

from infleet.api import InferenceServiceSpec, PodTemplate
from infleet.operator.errors import SpecError
from infleet.operator.names import Pool
from infleet.operator.pod_security import container_security_context
from infleet.operator.presets import spot_markers, tolerates_spot

Obj = dict[str, Any]
ENGINE = "engine"
# What a template may add to the engine container; its other fields are the operator's.
ENGINE_FIELDS = {"name", "env", "envFrom", "volumeMounts", "resources", "securityContext"}
OWNED_RESOURCES = {
    "cpu": "resources.cpu",
    "memory": "resources.memory",
    "nvidia.com/gpu": "resources.gpus",
}
# Pod fields a template sets as given.
SET_AS_GIVEN = (
    "serviceAccountName",
    "automountServiceAccountToken",
    "priorityClassName",
    "runtimeClassName",
)
REQUIRED_NODE_AFFINITY = "requiredDuringSchedulingIgnoredDuringExecution"


def conflict(path: str, why: str) -> SpecError:
    return SpecError(f"template.{path}", why, "TemplateConflict")


def deep_merge(base: Any, over: Any) -> Any:
    """Maps merge key by key (`over` wins); anything else is replaced by `over`."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for key, value in over.items():
            out[key] = deep_merge(base[key], value) if key in base else copy.deepcopy(value)
        return out
    return copy.deepcopy(over)


def _by_key(owned: list[Obj], extra: list[Obj], key: str, path: str, what: str) -> list[Obj]:
    """`owned` then the items of `extra` (merge key `key`); an item whose key the operator
    already renders is a conflict."""
    taken = {item[key] for item in owned}
    for item in extra:
        if item[key] in taken:
            raise conflict(f"{path}[{item[key]}]", f"{what} {item[key]!r} is the operator's")
    return [*owned, *extra]


def _resources(rendered: Obj, wanted: Obj, path: str) -> Obj:
    out = copy.deepcopy(rendered)
    for kind, amounts in wanted.items():
        for name, amount in (amounts or {}).items():
            if name in OWNED_RESOURCES and str(rendered.get(kind, {}).get(name)) != str(amount):
                raise conflict(
                    f"{path}.{kind}.{name}", f"set by spec.{OWNED_RESOURCES[name]}, not here"
                )
            out.setdefault(kind, {})[name] = amount
    return out


def _engine(container: Obj, wanted: Obj) -> Obj:
    path = f"spec.containers[{ENGINE}]"
    for key in wanted:
        if key not in ENGINE_FIELDS:
            raise conflict(f"{path}.{key}", "the engine container's own field is the operator's")
    out = dict(container)
    env = [dict(e) for e in wanted.get("env") or []]
    out["env"] = _by_key(container.get("env", []), env, "name", f"{path}.env", "env var")
    mounts = [dict(m) for m in wanted.get("volumeMounts") or []]
    owned = container.get("volumeMounts", [])
    out["volumeMounts"] = _by_key(owned, mounts, "mountPath", f"{path}.volumeMounts", "mount")
    if wanted.get("envFrom"):
        out["envFrom"] = [*container.get("envFrom", []), *wanted["envFrom"]]
    if wanted.get("resources"):
        out["resources"] = _resources(
            container["resources"], wanted["resources"], f"{path}.resources"
        )
    if wanted.get("securityContext"):
        out["securityContext"] = deep_merge(container["securityContext"], wanted["securityContext"])
    return out


def _containers(rendered: list[Obj], extra: list[Obj], path: str) -> list[Obj]:
    out = list(rendered)
    names = {c["name"] for c in rendered}
    for wanted in extra:
        if wanted["name"] == ENGINE and path == "spec.containers":
            out = [_engine(c, wanted) if c["name"] == ENGINE else c for c in out]
            continue
        if wanted["name"] in names or wanted["name"] == ENGINE:
            raise conflict(f"{path}[{wanted['name']}]", "that container is the operator's")
        context = deep_merge(container_security_context(), wanted.get("securityContext") or {})
        out.append({**wanted, "securityContext": context})
    return out


def _placement(pod: Obj, spec: InferenceServiceSpec, pool: Pool, overlay: Obj) -> None:
    selector = dict(pod.get("nodeSelector") or {})
    markers = spot_markers(spec)
    for key, value in (overlay.get("nodeSelector") or {}).items():
        owned = key in selector and selector[key] != value
        if owned or (pool == "dedicated" and markers.get(key) == value):
            raise conflict(f"spec.nodeSelector.{key}", f"the {pool} pool's placement owns it")
        selector[key] = value
    if selector:
        pod["nodeSelector"] = selector
    tolerations = list(pod.get("tolerations") or [])
    for i, toleration in enumerate(overlay.get("tolerations") or []):
        if pool == "dedicated" and tolerates_spot(spec, toleration):
            raise conflict(
                f"spec.tolerations[{i}]", "tolerates the spot taint on the dedicated pool"
            )
        if toleration not in tolerations:
            tolerations.append(toleration)
    pod["tolerations"] = tolerations
    affinity = overlay.get("affinity")
    if affinity:
        if REQUIRED_NODE_AFFINITY in (affinity.get("nodeAffinity") or {}):
            raise conflict(
                f"spec.affinity.nodeAffinity.{REQUIRED_NODE_AFFINITY}",
                "required node affinity is the pools' own (capacity.dedicated / capacity.spot)",
            )
        pod["affinity"] = deep_merge(pod.get("affinity") or {}, affinity)


def _labels(meta: Obj, overlay: Obj) -> Obj:
    out = copy.deepcopy(meta)
    for kind in ("labels", "annotations"):
        for key, value in (overlay.get(kind) or {}).items():
            if key in meta.get(kind, {}) and meta[kind][key] != value:
                raise conflict(f"metadata.{kind}.{key}", "the operator sets it")
            out.setdefault(kind, {})[key] = value
    return out


def apply_template(
    template: Obj, spec: InferenceServiceSpec, overlay: PodTemplate, pool: Pool
) -> Obj:
    """The rendered pod template with `overlay` merged in; SpecError on a conflict."""
    wire = overlay.to_wire()
    over, pod = wire.get("spec", {}), copy.deepcopy(template["spec"])
    pod |= {key: over[key] for key in SET_AS_GIVEN if key in over}
    if over.get("imagePullSecrets"):
        pulls = pod.get("imagePullSecrets", [])
        pod["imagePullSecrets"] = pulls + [s for s in over["imagePullSecrets"] if s not in pulls]
    if over.get("securityContext"):
        pod["securityContext"] = deep_merge(pod["securityContext"], over["securityContext"])
    if over.get("volumes"):
        pod["volumes"] = _by_key(pod["volumes"], over["volumes"], "name", "spec.volumes", "volume")
    pod["containers"] = _containers(
        pod["containers"], over.get("containers") or [], "spec.containers"
    )
    inits = over.get("initContainers") or []
    if inits:
        pod["initContainers"] = _containers(
            pod.get("initContainers", []), inits, "spec.initContainers"
        )
    _placement(pod, spec, pool, over)
    return {"metadata": _labels(template["metadata"], wire.get("metadata", {})), "spec": pod}
