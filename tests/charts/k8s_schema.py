"""Checks a manifest against the Kubernetes API types of the official `kubernetes` client.

The client's models are generated from the Kubernetes OpenAPI spec: each knows its fields
(`attribute_map`) and their types (`openapi_types`). Walking a manifest through them catches
unknown or misspelled fields and wrong types; deserializing catches missing required fields.
"""

from __future__ import annotations

import re
from typing import Any

from kubernetes import client

_API = client.ApiClient()
_PRIMITIVES = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "datetime": (str,),
    "date": (str,),
}


def model_name(api_version: str, kind: str) -> str:
    """The client model of a kind: apps/v1 Deployment -> V1Deployment."""
    version = api_version.rsplit("/", 1)[-1]
    return version[0].upper() + version[1:] + kind


def _problems(value: Any, type_name: str, path: str) -> list[str]:
    if type_name == "object":  # IntOrString, RawExtension: anything goes
        return []
    if m := re.fullmatch(r"[Ll]ist\[(.+)\]", type_name):
        if not isinstance(value, list):
            return [f"{path}: expected a list, got {type(value).__name__}"]
        return [p for i, v in enumerate(value) for p in _problems(v, m[1], f"{path}[{i}]")]
    if m := re.fullmatch(r"[Dd]ict\[?\(?str, (.+?)[\])]", type_name):
        if not isinstance(value, dict):
            return [f"{path}: expected a mapping, got {type(value).__name__}"]
        return [p for k, v in value.items() for p in _problems(v, m[1], f"{path}.{k}")]
    if type_name in _PRIMITIVES:
        ok = isinstance(value, _PRIMITIVES[type_name]) and not (
            type_name in ("int", "float") and isinstance(value, bool)
        )
        return [] if ok else [f"{path}: expected {type_name}, got {value!r}"]
    model = getattr(client.models, type_name)
    if not isinstance(value, dict):
        return [f"{path}: expected a {type_name} mapping, got {value!r}"]
    by_json = {json: attr for attr, json in model.attribute_map.items()}
    found = []
    for key, item in value.items():
        if key not in by_json:
            found.append(f"{path}.{key}: unknown field of {type_name}")
        else:
            found += _problems(item, model.openapi_types[by_json[key]], f"{path}.{key}")
    return found


def validate(manifest: dict[str, Any]) -> list[str]:
    """Every problem with a built-in manifest, as `kind/name.path: what` lines; [] when valid."""
    name = model_name(manifest["apiVersion"], manifest["kind"])
    where = f"{manifest['kind']}/{manifest.get('metadata', {}).get('name')}"
    problems = [f"{where}{p}" for p in _problems(manifest, name, "")]
    if not problems:
        try:  # the generated setters reject a missing required field
            _API._ApiClient__deserialize(manifest, name)
        except ValueError as err:
            problems.append(f"{where}: {err}")
    return problems
