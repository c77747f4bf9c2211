"""JSON merge patch (RFC 7386), JSON patch (RFC 6902) and strategic merge patch.

Strategic merge needs each list's merge key; the real apiserver reads them from Go
struct tags. `merge_key` holds the ones kubectl apply meets on the objects we serve.
"""

from __future__ import annotations

from typing import Any

from infleet.localplane.clone import clone
from infleet.localplane.errors import ApiError

# (parent field, list field) -> merge key; "" parent matches any. None = merge primitives.
_MERGE_KEYS: dict[tuple[str, str], str | None] = {
    ("", "containers"): "name",
    ("", "initContainers"): "name",
    ("", "ephemeralContainers"): "name",
    ("", "env"): "name",
    ("", "volumes"): "name",
    ("", "volumeMounts"): "mountPath",
    ("", "volumeDevices"): "devicePath",
    ("", "imagePullSecrets"): "name",
    ("", "hostAliases"): "ip",
    ("", "conditions"): "type",
    ("", "ownerReferences"): "uid",
    ("", "topologySpreadConstraints"): "topologyKey",
    ("", "resourceClaims"): "name",
    ("containers", "ports"): "containerPort",
    ("initContainers", "ports"): "containerPort",
    ("spec", "ports"): "port",  # Service ports
    ("metadata", "finalizers"): None,
}


def merge_key(parent: str, field: str) -> tuple[bool, str | None]:
    """(is merged, key) for a list field under `parent` (the enclosing field name)."""
    for k in ((parent, field), ("", field)):
        if k in _MERGE_KEYS:
            return True, _MERGE_KEYS[k]
    return False, None


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return clone(patch)
    out = clone(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


# -- JSON patch ---------------------------------------------------------------
def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ApiError(422, f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc: Any, parts: list[str], path: str) -> Any:
    for p in parts:
        if isinstance(doc, list):
            try:
                doc = doc[int(p)]
            except (ValueError, IndexError) as err:
                raise ApiError(422, f"path {path!r} not found") from err
        elif isinstance(doc, dict) and p in doc:
            doc = doc[p]
        else:
            raise ApiError(422, f"path {path!r} not found")
    return doc


def _set(doc: Any, parts: list[str], value: Any, path: str, insert: bool) -> Any:
    if not parts:
        return value
    parent, last = _walk(doc, parts[:-1], path), parts[-1]
    if isinstance(parent, list):
        idx = len(parent) if last == "-" else int(last)
        if idx > len(parent) or (not insert and idx >= len(parent)):
            raise ApiError(422, f"path {path!r} out of range")
        if insert:
            parent.insert(idx, value)
        else:
            parent[idx] = value
    elif isinstance(parent, dict):
        if not insert and last not in parent:
            raise ApiError(422, f"replace operation does not apply: doc is missing key: {path}")
        parent[last] = value
    else:
        raise ApiError(422, f"path {path!r} not found")
    return doc


def _remove(doc: Any, parts: list[str], path: str) -> Any:
    parent, last = _walk(doc, parts[:-1], path), parts[-1]
    try:
        if isinstance(parent, list):
            return parent.pop(int(last))
        return parent.pop(last)
    except (KeyError, ValueError, IndexError, AttributeError) as err:
        raise ApiError(
            422, f"remove operation does not apply: doc is missing path: {path}"
        ) from err


def json_patch(target: Any, ops: list[dict[str, Any]]) -> Any:
    if not isinstance(ops, list):
        raise ApiError(400, "a JSON patch must be a list of operations")
    doc = clone(target)
    for op in ops:
        kind, path = op.get("op"), op.get("path", "")
        parts = _pointer(path)
        if kind == "test":
            if _walk(doc, parts, path) != op.get("value"):
                raise ApiError(422, f"the server rejected our request: test failed at {path}")
        elif kind == "add":
            doc = _set(doc, parts, clone(op.get("value")), path, insert=True)
        elif kind == "replace":
            doc = _set(doc, parts, clone(op.get("value")), path, insert=False)
        elif kind == "remove":
            _remove(doc, parts, path)
        elif kind in ("move", "copy"):
            src = _pointer(op.get("from", ""))
            value = clone(_walk(doc, src, op.get("from", "")))
            if kind == "move":
                _remove(doc, src, op["from"])
            doc = _set(doc, parts, value, path, insert=True)
        else:
            raise ApiError(422, f"unexpected JSON patch operation {kind!r}")
    return doc


# -- strategic merge patch ----------------------------------------------------
def strategic_merge(target: Any, patch: Any, parent: str = "") -> Any:
    if not isinstance(patch, dict):
        return clone(patch)
    if patch.get("$patch") == "replace":
        return {k: clone(v) for k, v in patch.items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return None
    out = clone(target) if isinstance(target, dict) else {}
    orders: dict[str, list[Any]] = {}
    retain = patch.get("$retainKeys")
    for k, v in patch.items():
        if k in ("$patch", "$retainKeys"):
            continue
        if k.startswith("$setElementOrder/"):
            orders[k.split("/", 1)[1]] = v
        elif k.startswith("$deleteFromPrimitiveList/"):
            field = k.split("/", 1)[1]
            out[field] = [x for x in out.get(field) or [] if x not in v]
        elif v is None:
            out.pop(k, None)
        elif isinstance(v, list):
            merged, key = merge_key(parent, k)
            out[k] = _merge_list(out.get(k), v, key, k) if merged else clone(v)
        else:
            result = strategic_merge(out.get(k), v, k)
            if result is None:
                out.pop(k, None)
            else:
                out[k] = result
    for field, order in orders.items():
        _, key = merge_key(parent, field)
        out[field] = _reorder(out.get(field) or [], order, key)
    if retain is not None:
        out = {k: v for k, v in out.items() if k in retain}
    return out


def _merge_list(
    current: list[Any] | None, patch: list[Any], key: str | None, field: str
) -> list[Any]:
    current = clone(current or [])
    if key is None:  # merged list of primitives: union, keep order
        return current + [x for x in patch if x not in current]
    if any(isinstance(p, dict) and p.get("$patch") == "replace" for p in patch):
        return [p for p in clone(patch) if p.get("$patch") != "replace"]
    for item in patch:
        idx = next((i for i, c in enumerate(current) if c.get(key) == item.get(key)), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                current.pop(idx)
        elif idx is None:
            current.append(strategic_merge({}, item, field))
        else:
            current[idx] = strategic_merge(current[idx], item, field)
    return current


def _reorder(items: list[Any], order: list[Any], key: str | None) -> list[Any]:
    def ident(x: Any) -> Any:
        return x.get(key) if key and isinstance(x, dict) else x

    wanted = [ident(o) for o in order]
    ranked = sorted(
        items, key=lambda x: wanted.index(ident(x)) if ident(x) in wanted else len(wanted)
    )
    return ranked
