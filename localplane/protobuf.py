"""Decode the few protobuf bodies kubectl sends for built-in types.

kubectl 1.32 writes built-in objects it builds itself (`kubectl create namespace`,
`create configmap|secret|serviceaccount`, the Eviction of `kubectl drain`) as
`application/vnd.kubernetes.protobuf` and does not fall back to JSON on 415. The wire
format is the `k8s\\x00` magic plus a `runtime.Unknown` envelope around the object; the
field numbers below are those of Kubernetes' generated.proto for these types. Other
types answer 415 (use `kubectl apply -f`/`create -f`, which send JSON).
"""

from __future__ import annotations

import base64
from datetime import datetime, timezone
from typing import Any

from infleet.localplane.errors import ApiError

MAGIC = b"k8s\x00"
# message -> field number -> (json name, type, repeated); type is a message name or
# string/bytes/int/bool/map (map<string,string>)/bmap (map<string,bytes>)/time
Field = tuple[str, str, bool]
SCHEMAS: dict[str, dict[int, Field]] = {
    "Unknown": {
        1: ("typeMeta", "TypeMeta", False),
        2: ("raw", "bytes", False),
        3: ("contentEncoding", "string", False),
        4: ("contentType", "string", False),
    },
    "TypeMeta": {1: ("apiVersion", "string", False), 2: ("kind", "string", False)},
    "ObjectMeta": {
        1: ("name", "string", False),
        2: ("generateName", "string", False),
        3: ("namespace", "string", False),
        5: ("uid", "string", False),
        6: ("resourceVersion", "string", False),
        7: ("generation", "int", False),
        8: ("creationTimestamp", "time", False),
        10: ("deletionGracePeriodSeconds", "int", False),
        11: ("labels", "map", False),
        12: ("annotations", "map", False),
        13: ("ownerReferences", "OwnerReference", True),
        14: ("finalizers", "string", True),
    },
    "OwnerReference": {
        1: ("kind", "string", False),
        3: ("name", "string", False),
        4: ("uid", "string", False),
        5: ("apiVersion", "string", False),
        6: ("controller", "bool", False),
        7: ("blockOwnerDeletion", "bool", False),
    },
    "Namespace": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "NamespaceSpec", False)},
    "NamespaceSpec": {1: ("finalizers", "string", True)},
    "ConfigMap": {
        1: ("metadata", "ObjectMeta", False),
        2: ("data", "map", False),
        3: ("binaryData", "bmap", False),
        4: ("immutable", "bool", False),
    },
    "Secret": {
        1: ("metadata", "ObjectMeta", False),
        2: ("data", "bmap", False),
        3: ("type", "string", False),
        4: ("stringData", "map", False),
        5: ("immutable", "bool", False),
    },
    "ServiceAccount": {
        1: ("metadata", "ObjectMeta", False),
        4: ("automountServiceAccountToken", "bool", False),
    },
    "Eviction": {
        1: ("metadata", "ObjectMeta", False),
        2: ("deleteOptions", "DeleteOptions", False),
    },
    "DeleteOptions": {
        1: ("gracePeriodSeconds", "int", False),
        2: ("preconditions", "Preconditions", False),
        4: ("propagationPolicy", "string", False),
        5: ("dryRun", "string", True),
    },
    "Preconditions": {1: ("uid", "string", False), 2: ("resourceVersion", "string", False)},
    "Timestamp": {1: ("seconds", "int", False), 2: ("nanos", "int", False)},
    "MapEntry": {1: ("key", "string", False), 2: ("value", "bytes", False)},
}


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def _fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    out, i = [], 0
    while i < len(buf):
        tag, i = _varint(buf, i)
        num, wire = tag >> 3, tag & 7
        if wire == 0:
            val, i = _varint(buf, i)
            out.append((num, val))
        elif wire == 2:
            n, i = _varint(buf, i)
            out.append((num, buf[i : i + n]))
            i += n
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            out.append((num, buf[i : i + size]))
            i += size
        else:
            raise ApiError(400, f"unsupported protobuf wire type {wire}")
    return out


def _message(buf: bytes, name: str) -> dict[str, Any]:
    schema, out = SCHEMAS[name], {}
    for num, raw in _fields(buf):
        if num not in schema:
            continue
        key, kind, repeated = schema[num]
        if kind in ("map", "bmap"):
            entry = _message(raw, "MapEntry")  # type: ignore[arg-type]
            value = entry.get("value", b"")
            out.setdefault(key, {})[entry.get("key", "")] = (
                value.decode() if kind == "map" else base64.b64encode(value).decode()
            )
            continue
        if kind == "string":
            value = raw.decode()  # type: ignore[union-attr]
        elif kind == "bytes":
            value = raw
        elif kind in ("int", "bool"):
            value = bool(raw) if kind == "bool" else raw
        elif kind == "time":
            ts = _message(raw, "Timestamp")  # type: ignore[arg-type]
            value = datetime.fromtimestamp(ts.get("seconds", 0), timezone.utc).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            )
        else:
            value = _message(raw, kind)  # type: ignore[arg-type]
        if repeated:
            out.setdefault(key, []).append(value)
        elif value != "":  # proto2 sends empty optional strings; JSON omits them
            out[key] = value
    return out


def decode(body: bytes) -> dict[str, Any]:
    if not body.startswith(MAGIC):
        raise ApiError(400, "protobuf body without the k8s envelope")
    envelope = _message(body[len(MAGIC) :], "Unknown")
    type_meta = envelope.get("typeMeta", {})
    kind = type_meta.get("kind", "")
    if kind not in SCHEMAS:
        raise ApiError(
            415,
            f"this local control plane reads protobuf only for Namespace, "
            f"ConfigMap, Secret, ServiceAccount and Eviction, not {kind!r}; "
            "send JSON (e.g. kubectl apply -f / create -f)",
        )
    obj = _message(envelope.get("raw", b""), kind)
    return {"apiVersion": type_meta.get("apiVersion", ""), "kind": kind, **obj}
