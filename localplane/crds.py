"""CustomResourceDefinitions: served versions become resource types; status says so."""

from __future__ import annotations

from typing import Any

from infleet.localplane.controller import Controller
from infleet.localplane.resources import Registry, ResourceType, ScaleSpec
from infleet.localplane.store import Store, WatchEvent, now_rfc3339

CRD_KEY = ("apiextensions.k8s.io", "customresourcedefinitions")


def types_of(crd: dict[str, Any]) -> list[ResourceType]:
    spec = crd["spec"]
    names = spec["names"]
    out = []
    for v in spec.get("versions") or []:
        if not v.get("served", True):
            continue
        subs = v.get("subresources") or {}
        scale = subs.get("scale")
        out.append(
            ResourceType(
                group=spec["group"],
                version=v["name"],
                kind=names["kind"],
                plural=names["plural"],
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                short_names=list(names.get("shortNames") or []),
                categories=list(names.get("categories") or []),
                status_subresource="status" in subs,
                scale=ScaleSpec(
                    scale["specReplicasPath"],
                    scale["statusReplicasPath"],
                    scale.get("labelSelectorPath"),
                )
                if scale
                else None,
                has_generation=True,
                schema=(v.get("schema") or {}).get("openAPIV3Schema")
                or {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                printer_columns=list(v.get("additionalPrinterColumns") or []),
                is_custom=True,
            )
        )
    return out


class CrdRegistrar(Controller):
    """Registers types synchronously on each CRD event (so a CR applied right after its
    CRD is served), then marks the CRD Established from the work queue."""

    def __init__(self, api: Any, registry: Registry, store: Store) -> None:
        super().__init__(api)
        self.registry, self.store = registry, store

    def on_event(self, event: WatchEvent) -> None:
        if event.key != CRD_KEY:
            return
        spec = event.obj["spec"]
        if event.old is not None:
            self.registry.remove_group_plural(
                event.old["spec"]["group"], event.old["spec"]["names"]["plural"]
            )
        if event.type == "DELETED":
            key = (spec["group"], spec["names"]["plural"])
            for obj in list(self.store.items(key)):
                self.store.remove(
                    key, obj["metadata"].get("namespace", ""), obj["metadata"]["name"]
                )
            return
        for rt in types_of(event.obj):
            self.registry.add(rt)
        self.enqueue(event.obj["metadata"]["name"])

    async def reconcile(self, item: Any) -> None:
        crd = self.store.get(CRD_KEY, "", item)
        if crd is None or crd["metadata"].get("deletionTimestamp"):
            return
        status = crd.setdefault("status", {})
        stamp = now_rfc3339()
        have = {c["type"]: c for c in status.get("conditions") or []}
        conds = []
        for ctype, reason, msg in (
            ("NamesAccepted", "NoConflicts", "no conflicts found"),
            ("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ):
            old = have.get(ctype, {})
            conds.append(
                {
                    "type": ctype,
                    "status": "True",
                    "reason": reason,
                    "message": msg,
                    "lastTransitionTime": old.get("lastTransitionTime", stamp),
                }
            )
        status["conditions"] = conds
        status["acceptedNames"] = crd["spec"]["names"]
        storage = [v["name"] for v in crd["spec"]["versions"] if v.get("storage")]
        status["storedVersions"] = sorted(set(status.get("storedVersions") or []) | set(storage))
        rt = self.registry.get(CRD_KEY[0], "v1", CRD_KEY[1])
        assert rt is not None
        self.api.update(rt, "", item, crd, "kube-apiserver", subresource="status")
