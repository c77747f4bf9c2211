"""Discovery documents: /version, /api, /apis and each group-version's resource list.

kubectl 1.32 asks for aggregated discovery first; answering with the legacy documents
(plain `application/json`) makes it fall back, exactly as it does against older servers.
"""

from __future__ import annotations

from typing import Any

from infleet.localplane.resources import ALL_VERBS, Registry, ResourceType

VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0-infleet-localplane",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.23",
    "compiler": "gc",
    "platform": "linux/amd64",
}


def core_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def group_list(registry: Registry) -> dict[str, Any]:
    groups = []
    for name, versions in sorted(registry.groups().items()):
        gvs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
        groups.append({"name": name, "versions": gvs, "preferredVersion": gvs[0]})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def group(registry: Registry, name: str) -> dict[str, Any] | None:
    versions = registry.groups().get(name)
    if not versions:
        return None
    gvs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": name,
        "versions": gvs,
        "preferredVersion": gvs[0],
    }


def _entry(rt: ResourceType) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": rt.plural,
        "singularName": rt.singular,
        "namespaced": rt.namespaced,
        "kind": rt.kind,
        "verbs": ALL_VERBS,
    }
    if rt.short_names:
        out["shortNames"] = rt.short_names
    if rt.categories:
        out["categories"] = rt.categories
    return out


def _sub(rt: ResourceType, sub: str, kind: str, verbs: list[str], **kw: str) -> dict[str, Any]:
    return {
        "name": f"{rt.plural}/{sub}",
        "singularName": "",
        "namespaced": rt.namespaced,
        "kind": kind,
        "verbs": verbs,
        **kw,
    }


def resource_list(registry: Registry, group_name: str, version: str) -> dict[str, Any] | None:
    types = registry.in_version(group_name, version)
    if not types:
        return None
    resources = []
    for rt in sorted(types, key=lambda r: r.plural):
        resources.append(_entry(rt))
        if rt.status_subresource:
            resources.append(_sub(rt, "status", rt.kind, ["get", "patch", "update"]))
        if rt.scale is not None:
            resources.append(
                _sub(
                    rt,
                    "scale",
                    "Scale",
                    ["get", "patch", "update"],
                    group="autoscaling",
                    version="v1",
                )
            )
        for extra in rt.extra_subresources:
            kind = {"log": "Pod", "eviction": "Eviction", "binding": "Binding"}[extra]
            verbs = ["get"] if extra == "log" else ["create"]
            kw = {"group": "policy", "version": "v1"} if extra == "eviction" else {}
            resources.append(_sub(rt, extra, kind, verbs, **kw))
    gv = f"{group_name}/{version}" if group_name else version
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv,
        "resources": resources,
    }


AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"


def wants_aggregated(accept: str) -> bool:
    return "as=APIGroupDiscoveryList" in accept and "v=v2;" in accept.replace(" ", "") + ";"


def aggregated(registry: Registry, core: bool) -> dict[str, Any]:
    """apidiscovery.k8s.io/v2 for /api (core) or /apis: every group, version and resource
    in one document, built from the same lists the legacy endpoints serve."""
    groups = [("", ["v1"])] if core else sorted(registry.groups().items())
    items = []
    for group_name, versions in groups:
        out_versions = []
        for version in versions:
            listed = resource_list(registry, group_name, version)
            if listed is None:
                continue
            top: dict[str, dict[str, Any]] = {}
            for r in listed["resources"]:
                parent, _, sub = r["name"].partition("/")
                kind = {
                    "group": r.get("group", group_name),
                    "version": r.get("version", version),
                    "kind": r["kind"],
                }
                if not sub:
                    entry = {
                        "resource": parent,
                        "responseKind": kind,
                        "scope": "Namespaced" if r["namespaced"] else "Cluster",
                        "singularResource": r["singularName"],
                        "verbs": r["verbs"],
                    }
                    for key in ("shortNames", "categories"):
                        if key in r:
                            entry[key] = r[key]
                    top[parent] = entry
                else:
                    top[parent].setdefault("subresources", []).append(
                        {"subresource": sub, "responseKind": kind, "verbs": r["verbs"]}
                    )
            out_versions.append(
                {"version": version, "resources": list(top.values()), "freshness": "Current"}
            )
        items.append({"metadata": {"name": group_name}, "versions": out_versions})
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    }
