"""managedFields and server-side apply: who owns which field, conflicts, force.

A field set is a set of paths; a path is a tuple of fieldsV1 elements: `f:name` for a
map key, `k:{"name":"x"}` for an item of an associative list, `v:"x"` for a set member.
Lists are associative when Kubernetes merges them by key (built-ins: the strategic
merge keys; CRDs: `x-kubernetes-list-type: map`), sets when `x-kubernetes-list-type:
set` (or merged primitive lists like finalizers), otherwise atomic (one leaf).
"""

from __future__ import annotations

import json
from typing import Any

from infleet.localplane.clone import clone
from infleet.localplane.errors import ApiError
from infleet.localplane.patches import merge_key
from infleet.localplane.store import now_rfc3339

Path = tuple[str, ...]
_IDENTITY = {
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
}


def _child(schema: dict[str, Any] | None, key: str | None) -> dict[str, Any] | None:
    if not schema:
        return None
    if key is None:
        return schema.get("items")
    props = schema.get("properties") or {}
    if key in props:
        return props[key]
    extra = schema.get("additionalProperties")
    return extra if isinstance(extra, dict) else None


def _list_kind(parent: str, field: str, schema: dict[str, Any] | None) -> tuple[str, list[str]]:
    if schema is not None and schema.get("x-kubernetes-list-type"):
        kind = schema["x-kubernetes-list-type"]
        return kind, list(schema.get("x-kubernetes-list-map-keys") or [])
    merged, key = merge_key(parent, field)
    if not merged:
        return "atomic", []
    return ("set", []) if key is None else ("map", [key])


def _item_key(item: Any, keys: list[str]) -> str:
    return "k:" + json.dumps({k: item.get(k) for k in keys}, separators=(",", ":"))


def fields_of(
    obj: Any, schema: dict[str, Any] | None = None, parent: str = "", prefix: Path = ()
) -> set[Path]:
    out: set[Path] = set()
    if not isinstance(obj, dict):
        return out
    for k, v in obj.items():
        if not prefix and k in ("apiVersion", "kind"):
            continue
        if prefix == ("f:metadata",) and k in _IDENTITY:
            continue
        path, sub = (*prefix, f"f:{k}"), _child(schema, k)
        if isinstance(v, dict) and v:
            out |= fields_of(v, sub, k, path)
        elif isinstance(v, list) and v:
            kind, keys = _list_kind(parent, k, sub)
            if kind == "map" and all(isinstance(i, dict) for i in v):
                for item in v:
                    item_path = (*path, _item_key(item, keys))
                    out.add(item_path)
                    out |= fields_of(item, _child(sub, None), k, item_path)
            elif kind == "set":
                out |= {(*path, "v:" + json.dumps(i)) for i in v}
            else:
                out.add(path)
        else:
            out.add(path)
    return out


_MISSING = object()


def value_at(obj: Any, path: Path) -> Any:
    cur = obj
    for el in path:
        if el.startswith("f:") and isinstance(cur, dict):
            cur = cur.get(el[2:], _MISSING)
        elif el.startswith("k:") and isinstance(cur, list):
            want = json.loads(el[2:])
            cur = next((i for i in cur if all(i.get(k) == v for k, v in want.items())), _MISSING)
        elif el.startswith("v:") and isinstance(cur, list):
            cur = json.loads(el[2:]) if json.loads(el[2:]) in cur else _MISSING
        else:
            return _MISSING
        if cur is _MISSING:
            return _MISSING
    return cur


def remove_at(obj: Any, path: Path) -> None:
    parent = value_at(obj, path[:-1]) if len(path) > 1 else obj
    el = path[-1]
    if el.startswith("f:") and isinstance(parent, dict):
        parent.pop(el[2:], None)
    elif el.startswith("k:") and isinstance(parent, list):
        item = value_at(obj, path)
        if item is not _MISSING:
            parent.remove(item)
    elif el.startswith("v:") and isinstance(parent, list):
        value = json.loads(el[2:])
        if value in parent:
            parent.remove(value)


def path_string(path: Path) -> str:
    out = ""
    for el in path:
        if el.startswith("f:"):
            out += "." + el[2:]
        elif el.startswith("k:"):
            out += (
                "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in json.loads(el[2:]).items()) + "]"
            )
        else:
            out += f"[={el[2:]}]"
    return out


# -- fieldsV1 encoding --------------------------------------------------------
def encode(fields: set[Path]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path in sorted(fields):
        node = tree
        for el in path:
            node = node.setdefault(el, {})
    _mark_items(tree)
    return tree


def _mark_items(node: dict[str, Any]) -> None:
    for el, child in node.items():
        if el.startswith("k:") and child:
            child.setdefault(".", {})
        if el != ".":
            _mark_items(child)


def decode(tree: dict[str, Any], prefix: Path = ()) -> set[Path]:
    out: set[Path] = set()
    for el, child in tree.items():
        if el == ".":
            out.add(prefix)
        elif child:
            out |= decode(child, (*prefix, el))
        else:
            out.add((*prefix, el))
    return out


# -- the managedFields list ---------------------------------------------------
class ManagedFields:
    def __init__(self, entries: list[dict[str, Any]] | None) -> None:
        self.entries = [
            {**e, "_set": decode(e.get("fieldsV1") or {})} for e in clone(entries or [])
        ]

    def _entry(self, manager: str, operation: str, api_version: str, sub: str | None) -> dict:
        for e in self.entries:
            if (e["manager"], e["operation"], e.get("subresource")) == (manager, operation, sub):
                e["apiVersion"] = api_version
                return e
        e = {"manager": manager, "operation": operation, "apiVersion": api_version, "_set": set()}
        if sub:
            e["subresource"] = sub
        self.entries.append(e)
        return e

    def record_update(
        self,
        old: dict | None,
        new: dict,
        manager: str,
        api_version: str,
        schema: dict | None,
        sub: str | None = None,
    ) -> None:
        if old is None:
            changed = new_fields = fields_of(new, schema)
        else:
            # Only top-level fields whose values differ can hold changed paths (a status
            # update leaves spec alone): walking just those gives the same sets faster.
            differ = {
                k for k in old.keys() | new.keys() if old.get(k, _MISSING) != new.get(k, _MISSING)
            }
            new_fields = fields_of({k: new[k] for k in differ if k in new}, schema)
            old_fields = fields_of({k: old[k] for k in differ if k in old}, schema)
            changed = {p for p in new_fields if value_at(old, p) != value_at(new, p)}
            changed |= old_fields - new_fields
        for e in self.entries:
            e["_set"] -= changed
        mine = self._entry(manager, "Update", api_version, sub)
        mine["_set"] |= changed & new_fields
        mine["time"] = now_rfc3339()

    def apply(
        self,
        current: dict,
        config: dict,
        manager: str,
        api_version: str,
        schema: dict | None,
        force: bool,
    ) -> dict:
        """Server-side apply `config` onto `current`; returns the merged object."""
        wanted = fields_of(config, schema)
        conflicts = []
        for e in self.entries:
            if e["manager"] == manager:
                continue
            for p in sorted(e["_set"] & wanted):
                if value_at(current, p) != value_at(config, p):
                    conflicts.append((e, p))
        if conflicts and not force:
            raise _conflict_error(conflicts)
        for e, p in conflicts:
            e["_set"].discard(p)
        mine = self._entry(manager, "Apply", api_version, None)
        others = set().union(*(e["_set"] for e in self.entries if e is not mine))
        merged = clone(current)
        for p in sorted(mine["_set"] - wanted - others, key=len, reverse=True):
            remove_at(merged, p)
        merged = _apply_merge(merged, config, schema, "")
        mine["_set"] = wanted
        mine["time"] = now_rfc3339()
        return merged

    def dump(self) -> list[dict[str, Any]]:
        out = []
        for e in self.entries:
            if not e["_set"]:
                continue
            entry = {k: v for k, v in e.items() if k != "_set"}
            entry.update(fieldsType="FieldsV1", fieldsV1=encode(e["_set"]))
            entry.setdefault("time", now_rfc3339())
            out.append(entry)
        return out


def _apply_merge(cur: Any, cfg: Any, schema: dict | None, parent: str) -> Any:
    if not isinstance(cfg, dict) or not isinstance(cur, dict):
        return clone(cfg)
    out = dict(cur)
    for k, v in cfg.items():
        sub = _child(schema, k)
        if isinstance(v, list) and isinstance(out.get(k), list):
            kind, keys = _list_kind(parent, k, sub)
            if kind == "map":
                items = list(out[k])
                for item in v:
                    ident = {key: item.get(key) for key in keys}
                    idx = next(
                        (
                            i
                            for i, c in enumerate(items)
                            if isinstance(c, dict) and all(c.get(a) == b for a, b in ident.items())
                        ),
                        None,
                    )
                    if idx is None:
                        items.append(clone(item))
                    else:
                        items[idx] = _apply_merge(items[idx], item, _child(sub, None), k)
                out[k] = items
            elif kind == "set":
                out[k] = out[k] + [i for i in v if i not in out[k]]
            else:
                out[k] = clone(v)
        else:
            out[k] = _apply_merge(out.get(k), v, sub, k)
    return out


def _conflict_error(conflicts: list[tuple[dict, Path]]) -> ApiError:
    causes = [
        {
            "reason": "FieldManagerConflict",
            "message": f'conflict with "{e["manager"]}" using {e["apiVersion"]}',
            "field": path_string(p),
        }
        for e, p in conflicts
    ]
    n = len(causes)
    if n == 1:
        msg = f"Apply failed with 1 conflict: {causes[0]['message']}: {causes[0]['field']}"
    else:
        lines = "\n".join(f"{c['message']}: {c['field']}" for c in causes)
        msg = f"Apply failed with {n} conflicts: {lines}"
    return ApiError(409, msg, details={"causes": causes})
