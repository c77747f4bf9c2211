"""OpenAPI v3 documents: enough for `kubectl apply` and `kubectl explain`.

Every PATCH operation declares the `fieldValidation` and `dryRun` query parameters, so
kubectl leaves validation to the server (strict unknown-field checks against CRD
schemas) instead of downloading the protobuf OpenAPI v2 document, which we do not
serve. Custom resources carry their full schema (for `kubectl explain`); built-in
types carry none, so kubectl computes strategic merge patches from its own compiled-in
types, exactly the fallback it uses against servers without OpenAPI.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from infleet.localplane.resources import Registry, ResourceType

_OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def index(registry: Registry) -> dict[str, Any]:
    gvs = {(rt.group, rt.version) for rt in registry.all()}
    paths = {}
    for group, version in sorted(gvs):
        path = _gv_path(group, version)
        digest = (
            hashlib.sha256(json.dumps(document(registry, group, version), sort_keys=True).encode())
            .hexdigest()[:32]
            .upper()
        )
        paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest}"}
    return {"paths": paths}


def schema_id(rt: ResourceType) -> str:
    parts = reversed(rt.group.split(".")) if rt.group else ["io", "k8s", "api", "core"]
    return ".".join([*parts, rt.version, rt.kind])


def _op(rt: ResourceType, action: str, params: list[str], body: list[str] | None = None) -> dict:
    op: dict[str, Any] = {
        "operationId": f"{action}{rt.kind}",
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {
            "group": rt.group,
            "version": rt.version,
            "kind": rt.kind,
        },
        "parameters": [
            {"name": p, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
            for p in params
        ],
        "responses": {
            "200": {
                "description": "OK",
                "content": {
                    "application/json": {
                        "schema": (
                            {"$ref": f"#/components/schemas/{schema_id(rt)}"}
                            if rt.schema is not None
                            else {"type": "object"}
                        )
                    }
                },
            }
        },
    }
    if body:
        op["requestBody"] = {
            "content": {t: {"schema": {"type": "object"}} for t in body},
            "required": True,
        }
    return op


def _paths(rt: ResourceType) -> dict[str, Any]:
    prefix = "/" + _gv_path(rt.group, rt.version)
    base = (
        f"{prefix}/namespaces/{{namespace}}/{rt.plural}"
        if rt.namespaced
        else f"{prefix}/{rt.plural}"
    )
    write = ["dryRun", "fieldManager", "fieldValidation"]
    patch_types = [
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/apply-patch+yaml",
    ]
    item = {
        "get": _op(rt, "get", []),
        "put": _op(rt, "put", write, ["application/json"]),
        "patch": _op(rt, "patch", [*write, "force"], patch_types),
        "delete": _op(rt, "delete", ["dryRun", "gracePeriodSeconds", "propagationPolicy"]),
    }
    collection = {
        "get": _op(rt, "list", ["labelSelector", "fieldSelector", "limit", "watch"]),
        "post": _op(rt, "post", write, ["application/json"]),
    }
    out = {base: collection, f"{base}/{{name}}": item}
    if rt.status_subresource:
        out[f"{base}/{{name}}/status"] = {k: item[k] for k in ("get", "put", "patch")}
    return out


def _component(rt: ResourceType) -> dict[str, Any]:
    schema = json.loads(json.dumps(rt.schema or {"type": "object"}))
    props = schema.setdefault("properties", {})
    props["apiVersion"] = {
        "type": "string",
        "description": "APIVersion defines the versioned schema of this representation of an object.",
    }
    props["kind"] = {
        "type": "string",
        "description": "Kind is a string value representing the REST resource this object represents.",
    }
    props["metadata"] = {
        "allOf": [{"$ref": f"#/components/schemas/{_OBJECT_META}"}],
        "description": "Standard object's metadata.",
    }
    schema["x-kubernetes-group-version-kind"] = [
        {"group": rt.group, "version": rt.version, "kind": rt.kind}
    ]
    return schema


def document(registry: Registry, group: str, version: str) -> dict[str, Any]:
    types = registry.in_version(group, version)
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {
        _OBJECT_META: {
            "type": "object",
            "description": "ObjectMeta is metadata that all persisted resources must have.",
            "properties": {
                k: {"type": t}
                for k, t in (
                    ("name", "string"),
                    ("namespace", "string"),
                    ("generateName", "string"),
                    ("uid", "string"),
                    ("resourceVersion", "string"),
                    ("generation", "integer"),
                    ("labels", "object"),
                    ("annotations", "object"),
                    ("finalizers", "array"),
                    ("ownerReferences", "array"),
                    ("creationTimestamp", "string"),
                    ("deletionTimestamp", "string"),
                    ("managedFields", "array"),
                )
            },
        }
    }
    for rt in types:
        paths.update(_paths(rt))
        if rt.schema is not None:
            schemas[schema_id(rt)] = _component(rt)
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }
