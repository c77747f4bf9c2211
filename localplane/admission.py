"""Per-type admission: defaults the real apiserver fills in, name checks, CRD schemas.

Built-in objects are defaulted but not schema-validated (see docs/localplane.md);
custom resources get the full structural-schema + CEL treatment.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
from typing import TYPE_CHECKING, Any

from infleet.localplane import errors
from infleet.localplane.errors import ApiError
from infleet.localplane.resources import ResourceType
from infleet.localplane.schema import apply_defaults, prune, validate
from infleet.localplane.store import Obj

if TYPE_CHECKING:
    from infleet.localplane.crud import Api

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def default_pod_spec(spec: dict[str, Any]) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    for c in spec.get("containers", []) + spec.get("initContainers", []):
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        c.setdefault("terminationMessagePolicy", "File")
        c.setdefault("imagePullPolicy", "IfNotPresent")
        c.setdefault("resources", {})
        for p in c.get("ports") or []:
            p.setdefault("protocol", "TCP")
        for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
            probe = c.get(kind)
            if probe is not None:
                for key, value in (
                    ("timeoutSeconds", 1),
                    ("periodSeconds", 10),
                    ("successThreshold", 1),
                    ("failureThreshold", 3),
                ):
                    probe.setdefault(key, value)
                if "httpGet" in probe:
                    probe["httpGet"].setdefault("scheme", "HTTP")


def qos_class(spec: dict[str, Any]) -> str:
    """Guaranteed: every container limits cpu and memory, with requests equal; BestEffort:
    nobody asks for anything; Burstable otherwise."""
    containers = spec.get("containers", []) + spec.get("initContainers", [])
    res = [c.get("resources") or {} for c in containers]
    if not any(r.get("requests") or r.get("limits") for r in res):
        return "BestEffort"
    for r in res:
        limits, requests = r.get("limits") or {}, r.get("requests") or {}
        for name in ("cpu", "memory"):
            if name not in limits or requests.get(name, limits[name]) != limits[name]:
                return "Burstable"
    return "Guaranteed"


def _pod_spec_fixed(new: dict[str, Any], old: dict[str, Any]) -> bool:
    """True when an update changes a pod spec field Kubernetes does not let change."""

    def fixed(spec: dict[str, Any], node: Any) -> dict[str, Any]:
        out = {
            k: v
            for k, v in spec.items()
            if k not in ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds")
        }
        for field in ("containers", "initContainers"):
            out[field] = [
                {k: v for k, v in c.items() if k != "image"} for c in spec.get(field) or []
            ]
        out["nodeName"] = node
        return out

    # The scheduler (binding) may set nodeName once.
    node = old.get("nodeName") or new.get("nodeName")
    return fixed(new, node) != fixed(old, node) or (
        bool(old.get("nodeName")) and new.get("nodeName") != old.get("nodeName")
    )


def _selector_immutable(kind: str, obj: Obj, old: Obj | None) -> None:
    if old is not None and obj.get("spec", {}).get("selector") != old["spec"].get("selector"):
        raise errors.invalid(
            kind,
            "apps",
            obj["metadata"]["name"],
            [
                errors.field_error(
                    "spec.selector",
                    f"Invalid value: {json.dumps(obj['spec'].get('selector'))}: field is immutable",
                )
            ],
        )


class Admission:
    def __init__(self, api: Api) -> None:
        self.api = api
        self.released: set[str] = set()  # uids whose graceful termination has finished
        self.service_ips = (str(ip) for ip in ipaddress.ip_network("127.2.0.0/16").hosts())

    def admit(
        self,
        rt: ResourceType,
        obj: Obj,
        old: Obj | None,
        validation: str,
        warnings: list[str] | None,
    ) -> None:
        meta = obj["metadata"]
        if (old is None and not _SUBDOMAIN.match(meta["name"])) or len(meta["name"]) > 253:
            raise errors.invalid(
                rt.kind,
                rt.group,
                meta["name"],
                [
                    errors.field_error(
                        "metadata.name",
                        f'Invalid value: "{meta["name"]}": a lowercase RFC 1123 subdomain must consist '
                        "of lower case alphanumeric characters, '-' or '.', and must start and end "
                        "with an alphanumeric character",
                    )
                ],
            )
        if old is None and rt.namespaced:
            ns = self.api.store.peek(("", "namespaces"), "", meta["namespace"])
            if ns is None:
                raise ApiError(
                    404,
                    f'namespaces "{meta["namespace"]}" not found',
                    details={"name": meta["namespace"], "kind": "namespaces"},
                )
            if ns["metadata"].get("deletionTimestamp"):
                raise ApiError(
                    403,
                    f'{rt.plural} "{meta["name"]}" is forbidden: unable to '
                    f"create new content in namespace {meta['namespace']} because "
                    "it is being terminated",
                    reason="Forbidden",
                )
        if rt.schema is not None:
            self._custom(rt, obj, old, validation, warnings)
        hook = getattr(self, f"_{(rt.group or 'core').replace('.', '_')}_{rt.plural}", None)
        if hook is not None:
            hook(obj, old)

    def _custom(
        self,
        rt: ResourceType,
        obj: Obj,
        old: Obj | None,
        validation: str,
        warnings: list[str] | None,
    ) -> None:
        assert rt.schema is not None
        unknown = prune(obj, rt.schema)
        if unknown and validation == "Strict":
            fields = ", ".join(f'unknown field "{u}"' for u in unknown)
            raise ApiError(
                400,
                f'{rt.kind} in version "{rt.version}" cannot be handled as a '
                f"{rt.kind}: strict decoding error: {fields}",
            )
        if unknown and validation == "Warn" and warnings is not None:
            warnings += [f'unknown field "{u}"' for u in unknown]
        apply_defaults(obj, rt.schema)
        causes = validate(obj, rt.schema, old, has_old=old is not None)
        if causes:
            raise errors.invalid(rt.kind, rt.group, obj["metadata"]["name"], causes)

    # -- deletion hooks --------------------------------------------------------
    def grace_period(self, rt: ResourceType, obj: Obj, grace: int | None) -> int | None:
        """None: remove at once; an int: terminate gracefully, a controller finishes it."""
        if rt.key == ("", "namespaces"):
            return 0
        if rt.key == ("", "pods") and obj["spec"].get("nodeName"):
            if grace is None:
                grace = obj["spec"].get("terminationGracePeriodSeconds", 30)
            return (
                grace
                if grace > 0 and obj.get("status", {}).get("phase") not in ("Succeeded", "Failed")
                else None
            )
        return None

    def grace_pending(self, rt: ResourceType, obj: Obj) -> bool:
        if rt.key not in (("", "namespaces"), ("", "pods")):
            return False
        if rt.key == ("", "pods") and obj["metadata"].get("deletionGracePeriodSeconds") is None:
            return False
        return obj["metadata"]["uid"] not in self.released

    def on_terminate(self, rt: ResourceType, obj: Obj) -> None:
        if rt.key == ("", "namespaces"):
            obj.setdefault("status", {})["phase"] = "Terminating"

    def on_delete(self, rt: ResourceType, obj: Obj) -> None:
        self.released.discard(obj["metadata"]["uid"])

    # -- per-type defaults (named _<group or core>_<plural>) ---------------------------
    def _core_namespaces(self, obj: Obj, old: Obj | None) -> None:
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        obj.setdefault("status", {}).setdefault("phase", "Active")
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"][
            "name"
        ]

    def _core_pods(self, obj: Obj, old: Obj | None) -> None:
        default_pod_spec(obj.setdefault("spec", {}))
        if old is None:
            obj["status"] = {"phase": "Pending", "qosClass": qos_class(obj["spec"])}
        elif _pod_spec_fixed(obj["spec"], old["spec"]):
            raise errors.invalid(
                "Pod",
                "",
                obj["metadata"]["name"],
                [
                    errors.field_error(
                        "spec",
                        "Forbidden: pod updates may not change fields other than "
                        "`spec.containers[*].image`, `spec.initContainers[*].image`, "
                        "`spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to existing "
                        "tolerations) or `spec.terminationGracePeriodSeconds`",
                        "FieldValueForbidden",
                    )
                ],
            )

    def _core_secrets(self, obj: Obj, old: Obj | None) -> None:
        # As the apiserver's Secret strategy: stringData is write-only, merged into data
        # (base64) and never stored.
        string_data = obj.pop("stringData", None) or {}
        data = obj.setdefault("data", {}) if string_data else obj.get("data")
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        obj.setdefault("type", "Opaque")

    def _core_services(self, obj: Obj, old: Obj | None) -> None:
        spec = obj.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        for p in spec.get("ports") or []:
            p.setdefault("protocol", "TCP")
            p.setdefault("targetPort", p.get("port"))
        if old is not None:
            spec["clusterIP"] = old["spec"].get("clusterIP")
        elif spec.get("clusterIP") != "None":
            spec["clusterIP"] = next(self.service_ips)
        if spec.get("clusterIP") and spec["clusterIP"] != "None":
            spec["clusterIPs"] = [spec["clusterIP"]]
        spec.setdefault("ipFamilies", ["IPv4"])
        obj.setdefault("status", {}).setdefault("loadBalancer", {})

    def _apps_deployments(self, obj: Obj, old: Obj | None) -> None:
        _selector_immutable("Deployment", obj, old)
        spec = obj.setdefault("spec", {})
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        strategy = spec.setdefault("strategy", {"type": "RollingUpdate"})
        if strategy.get("type", "RollingUpdate") == "RollingUpdate":
            strategy["type"] = "RollingUpdate"
            ru = strategy.setdefault("rollingUpdate", {})
            ru.setdefault("maxSurge", "25%")
            ru.setdefault("maxUnavailable", "25%")
        default_pod_spec(spec.setdefault("template", {}).setdefault("spec", {}))

    def _apps_replicasets(self, obj: Obj, old: Obj | None) -> None:
        _selector_immutable("ReplicaSet", obj, old)
        obj.setdefault("spec", {}).setdefault("replicas", 1)
        default_pod_spec(obj["spec"].setdefault("template", {}).setdefault("spec", {}))
