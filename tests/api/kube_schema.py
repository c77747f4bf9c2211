"""What the API server does with a CRD schema before storing an object, for tests:
apply `default`s, then evaluate every `x-kubernetes-validations` rule with a real CEL
implementation (cel-python), reporting failures as kube-apiserver prints them.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from typing import Any

import celpy

_ENV = celpy.Environment()


@lru_cache(maxsize=256)
def _program(rule: str) -> Any:
    return _ENV.program(_ENV.compile(rule))


def cel(rule: str, value: Any) -> bool:
    result = _program(rule).evaluate({"self": celpy.json_to_cel(value)})
    if isinstance(result, celpy.CELEvalError):
        raise result
    return bool(result)


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    value = copy.deepcopy(value)
    if isinstance(value, dict):
        for name, sub in schema.get("properties", {}).items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                value[name] = apply_defaults(sub, value[name])
    elif isinstance(value, list) and "items" in schema:
        value = [apply_defaults(schema["items"], v) for v in value]
    return value


def cel_errors(schema: dict[str, Any], value: Any, path: str = "spec") -> list[str]:
    """`PATH: Invalid value: "object": MESSAGE` for every failing rule, depth first."""
    errors = []
    if isinstance(value, dict):
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                errors += cel_errors(sub, value[name], f"{path}.{name}")
    for rule in schema.get("x-kubernetes-validations", []):
        if not cel(rule["rule"], value):
            errors.append(f'{path}: Invalid value: "object": {rule["message"]}')
    return errors
