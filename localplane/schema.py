"""Structural schemas of CRDs: defaulting, pruning, validation and CEL rules.

Messages follow the real apiserver's wording (kube-openapi + apiextensions), so a
user sees here what a cluster would print, e.g.
`spec.scaling: Invalid value: "object": minReplicas must not exceed maxReplicas`.
"""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any

from infleet.localplane.cel import CelError, evaluate
from infleet.localplane.clone import clone
from infleet.localplane.errors import field_error

Schema = dict[str, Any]
_ROOT_KEEP = {"apiVersion", "kind", "metadata"}
_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool}


def _fmt(value: Any) -> str:
    return (
        json.dumps(value)
        if isinstance(value, str | int | float | bool)
        else f'"{_type_name(value)}"'
    )


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return {dict: "object", list: "array", str: "string"}.get(type(value), "null")


def _props(schema: Schema) -> dict[str, Schema]:
    return schema.get("properties") or {}


def apply_defaults(value: Any, schema: Schema) -> Any:
    if isinstance(value, dict):
        for key, sub in _props(schema).items():
            if "default" in sub and (
                key not in value or (value[key] is None and not sub.get("nullable"))
            ):
                value[key] = clone(sub["default"])
            if key in value:
                value[key] = apply_defaults(value[key], sub)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key in value:
                if key not in _props(schema):
                    value[key] = apply_defaults(value[key], extra)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(v, schema["items"]) for v in value]
    return value


def prune(value: Any, schema: Schema, path: str = "", root: bool = True) -> list[str]:
    """Drop fields the schema does not know; returns their paths (for strict validation)."""
    unknown: list[str] = []
    if isinstance(value, dict) and not schema.get("x-kubernetes-preserve-unknown-fields"):
        props, extra = _props(schema), schema.get("additionalProperties")
        for key in list(value):
            if root and key in _ROOT_KEEP:
                continue  # apiVersion/kind/metadata are the apiserver's, never pruned
            if key in props:
                unknown += prune(value[key], props[key], f"{path}.{key}".lstrip("."), False)
            elif isinstance(extra, dict):
                unknown += prune(value[key], extra, f"{path}.{key}".lstrip("."), False)
            elif extra is True:
                continue
            else:
                unknown.append(f"{path}.{key}".lstrip("."))
                del value[key]
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            unknown += prune(item, schema["items"], f"{path}[{i}]", False)
    return unknown


def validate(
    value: Any, schema: Schema, old: Any = None, *, has_old: bool = False, path: str = ""
) -> list[dict[str, str]]:
    if has_old and value == old:
        # Validation ratcheting (Kubernetes 1.33): an update does not judge a value it
        # leaves unchanged again, except by transition rules. It also spares a status
        # write from re-running every CEL rule of the spec.
        return _transition_rules(value, schema, path)
    errors = _check_value(value, schema, path or "<root>")
    if errors:
        return errors
    if isinstance(value, dict):
        props, extra = _props(schema), schema.get("additionalProperties")
        for key in schema.get("required") or []:
            if key not in value:
                errors.append(field_error(_join(path, key), "Required value", "FieldValueRequired"))
        for key, sub in value.items():
            sch = props.get(key) or (extra if isinstance(extra, dict) else None)
            if sch is None or (not path and key in _ROOT_KEEP):
                continue
            o_has = has_old and isinstance(old, dict) and key in old
            errors += validate(
                sub, sch, old.get(key) if o_has else None, has_old=o_has, path=_join(path, key)
            )
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            errors += validate(item, schema["items"], path=f"{path}[{i}]")
    if not errors:
        errors += _cel(value, schema, old, has_old, path)
    return errors


def _transition_rules(value: Any, schema: Schema, path: str) -> list[dict[str, str]]:
    """The rules using oldSelf over an unchanged value (oldSelf is the value itself)."""
    errors = _cel(value, schema, value, True, path, transition_only=True)
    if isinstance(value, dict):
        props, extra = _props(schema), schema.get("additionalProperties")
        for key, sub in value.items():
            sch = props.get(key) or (extra if isinstance(extra, dict) else None)
            if sch is not None and (path or key not in _ROOT_KEEP):
                errors += _transition_rules(sub, sch, _join(path, key))
    return errors


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _check_value(value: Any, schema: Schema, path: str) -> list[dict[str, str]]:
    if value is None:
        return (
            []
            if schema.get("nullable")
            else [
                field_error(
                    path,
                    f'Invalid value: "null": {path} in body must be of type {schema.get("type", "object")}: "null"',
                    "FieldValueTypeInvalid",
                )
            ]
        )
    kind = schema.get("type")
    if schema.get("x-kubernetes-int-or-string"):
        ok = isinstance(value, int | str) and not isinstance(value, bool)
    elif kind == "integer":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "number":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    else:
        ok = kind is None or isinstance(value, _TYPES[kind])
    if not ok:
        return [
            field_error(
                path,
                f'Invalid value: "{_type_name(value)}": {path} in body must be of type {kind}: "{_type_name(value)}"',
                "FieldValueTypeInvalid",
            )
        ]
    errs: list[dict[str, str]] = []
    enum = schema.get("enum")
    if enum is not None and value not in enum:
        allowed = ", ".join(json.dumps(e) for e in enum)
        errs.append(
            field_error(
                path,
                f"Unsupported value: {_fmt(value)}: supported values: {allowed}",
                "FieldValueNotSupported",
            )
        )
    if isinstance(value, int | float) and not isinstance(value, bool):
        lo, hi = schema.get("minimum"), schema.get("maximum")
        if lo is not None and (value <= lo if schema.get("exclusiveMinimum") else value < lo):
            word = "greater than" if schema.get("exclusiveMinimum") else "greater than or equal to"
            errs.append(
                field_error(path, f"Invalid value: {value}: {path} in body should be {word} {lo}")
            )
        if hi is not None and (value >= hi if schema.get("exclusiveMaximum") else value > hi):
            word = "less than" if schema.get("exclusiveMaximum") else "less than or equal to"
            errs.append(
                field_error(path, f"Invalid value: {value}: {path} in body should be {word} {hi}")
            )
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            errs.append(
                field_error(
                    path,
                    f"Invalid value: {_fmt(value)}: {path} in body should be at least {schema['minLength']} chars long",
                )
            )
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errs.append(
                field_error(
                    path,
                    f"Too long: may not be more than {schema['maxLength']} bytes",
                    "FieldValueTooLong",
                )
            )
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errs.append(
                field_error(
                    path,
                    f"Invalid value: {_fmt(value)}: {path} in body should match '{schema['pattern']}'",
                )
            )
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            errs.append(
                field_error(
                    path,
                    f"Invalid value: {len(value)}: {path} in body should have at least {schema['minItems']} items",
                )
            )
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errs.append(
                field_error(
                    path,
                    f"Too many: {len(value)}: must have at most {schema['maxItems']} items",
                    "FieldValueTooMany",
                )
            )
    return errs


_CEL_REASONS = {
    "FieldValueForbidden": "Forbidden: {}",
    "FieldValueRequired": "Required value: {}",
    "FieldValueDuplicate": "Duplicate value: {}",
}


def _cel(
    value: Any, schema: Schema, old: Any, has_old: bool, path: str, transition_only: bool = False
) -> list[dict[str, str]]:
    errors = []
    for rule in schema.get("x-kubernetes-validations") or []:
        expr = rule["rule"]
        transition = "oldSelf" in expr
        if transition and not has_old and not rule.get("optionalOldSelf"):
            continue  # transition rules only judge updates
        if transition_only and not transition:
            continue
        field = path + (rule.get("fieldPath") or "")
        field = field.lstrip(".") or "<root>"
        try:
            ok = evaluate(expr, value, old, has_old=transition and has_old)
        except CelError as err:
            errors.append(
                field_error(
                    field, f"Invalid value: {_fmt_cel(value, schema)}: rule evaluation error: {err}"
                )
            )
            continue
        if ok is True or (ok is not False and bool(ok)):
            continue
        message = rule.get("message") or f"failed rule: {expr}"
        if rule.get("messageExpression"):
            with contextlib.suppress(CelError):
                message = str(
                    evaluate(rule["messageExpression"], value, old, has_old=transition and has_old)
                )
        reason = rule.get("reason", "FieldValueInvalid")
        text = _CEL_REASONS.get(reason, "Invalid value: {value}: {msg}")
        text = (
            text.format(message)
            if reason in _CEL_REASONS
            else text.format(value=_fmt_cel(value, schema), msg=message)
        )
        errors.append(field_error(field, text, reason))
    return errors


def _fmt_cel(value: Any, schema: Schema) -> str:
    return f'"{schema.get("type") or _type_name(value)}"'
