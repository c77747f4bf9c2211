"""Turn a pydantic model's JSON schema into a structural Kubernetes OpenAPI v3 schema.

Structural means: every node has a type, no `$ref`, `anyOf` only in the int-or-string
form, no `additionalProperties: false` (the API server prunes unknown fields instead).
Sub-objects whose fields all have defaults get `default: {}` so the API server fills
them in and CEL rules can read `self.scaling.maxReplicas` without `has()` guards.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel

_DROP = {"title", "$defs"}


def structural(model: type[BaseModel], *, defaults: bool = True) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return _sorted(_convert(raw, raw.get("$defs", {}), defaults))


def _sorted(node: Any) -> Any:
    """Stable key order, so regenerating the CRD gives a byte-identical file."""
    if isinstance(node, dict):
        return {k: _sorted(node[k]) for k in sorted(node)}
    if isinstance(node, list):
        return [_sorted(v) for v in node]
    return node


def _inline(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target = copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[-1]])
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        node = {**target, **siblings}
    return node


def _strip_null(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """`X | None` arrives as anyOf [X, null]: an optional field is just X in Kubernetes."""
    options = [_inline(o, defs) for o in node.get("anyOf", []) if o.get("type") != "null"]
    if "anyOf" not in node or len(options) > 1:
        return node
    rest = {k: v for k, v in node.items() if k != "anyOf"}
    return {**options[0], **rest}


def _convert(
    node: dict[str, Any], defs: dict[str, Any], defaults: bool, item: bool = False
) -> dict[str, Any]:
    node = _inline(node, defs)
    # `X | None = None`: unset means absent, so the API server must not fill it in.
    optional = any(o.get("type") == "null" for o in node.get("anyOf", []))
    node = _strip_null(node, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP or (key == "default" and (value is None or not defaults)):
            continue
        if key == "anyOf":
            continue  # handled below (int-or-string only)
        if key == "properties":
            out[key] = {name: _convert(sub, defs, defaults) for name, sub in value.items()}
        elif key == "items":
            out[key] = _convert(value, defs, defaults, item=True)
        elif key == "additionalProperties":
            if value is False:
                continue
            if value is True or value == {}:
                out["x-kubernetes-preserve-unknown-fields"] = True
            else:
                out[key] = _convert(value, defs, defaults)
        elif key == "exclusiveMinimum":
            out["minimum"], out["exclusiveMinimum"] = value, True
        elif key == "exclusiveMaximum":
            out["maximum"], out["exclusiveMaximum"] = value, True
        elif key == "const":
            out["enum"] = [value]
        else:
            out[key] = value
    if node.get("x-kubernetes-int-or-string") or "anyOf" in node:
        out.update(_int_or_string(node, defs))
    fillable = out.get("type") == "object" and "properties" in out and not out.get("required")
    if defaults and fillable and not item and not optional and "default" not in out:
        out["default"] = {}
    return out


def _int_or_string(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    options = [_inline(o, defs) for o in node["anyOf"] if o.get("type") != "null"]
    while len(options) == 1 and "anyOf" in options[0]:
        options = [_inline(o, defs) for o in options[0]["anyOf"] if o.get("type") != "null"]
    types = sorted(o.get("type") for o in options)
    if types != ["integer", "string"]:
        raise ValueError(f"only int-or-string unions can become a structural schema: {node}")
    patterns = [o["pattern"] for o in options if "pattern" in o]
    out: dict[str, Any] = {
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "x-kubernetes-int-or-string": True,
    }
    if patterns:
        out["pattern"] = patterns[0]
    return out
