"""Which structured output a request asks for, as (kind, value) for a StructuredSpec.

The spellings clients send: OpenAI's `response_format` (`json_object`, `json_schema`),
vLLM's `structured_outputs` (`json` / `regex` / `choice` / `grammar` / `json_object`) and
its older `guided_json` / `guided_regex` / `guided_choice` / `guided_grammar`, and a
`tool_choice` of `required` or a named function (its arguments' schema). At most one may
be given; each problem is a 400 naming the field. The grammar itself is compiled where the
constraint runs (engine/structured/constraint.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from infleet.engine.errors import InvalidRequest
from infleet.engine.messages import StructuredSpec

Structured = tuple[str, str]  # (kind, value): StructuredSpec's fields


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class JsonSchemaFormat(_Model):
    name: str = "response"
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Model):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class StructuredOutputs(_Model):
    json_: dict[str, Any] | str | None = Field(None, alias="json")
    regex: str | None = None
    choice: list[str] | None = Field(None, min_length=1)
    grammar: str | None = None
    json_object: bool | None = None


def _schema_text(schema: dict[str, Any] | str, param: str) -> str:
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError as err:
            raise InvalidRequest(f"{param} is not valid JSON: {err}", param) from None
    if not isinstance(schema, dict):
        raise InvalidRequest(f"{param} must be a JSON schema object", param)
    return json.dumps(schema)


def _regex(pattern: str, param: str) -> str:
    try:
        re.compile(pattern)
    except re.error as err:
        raise InvalidRequest(f"{param} is not a valid regular expression: {err}", param) from None
    return pattern


def _from_response_format(rf: ResponseFormat) -> Structured | None:
    if rf.type == "text":
        return None
    if rf.type == "json_object":
        return ("json_object", "")
    if rf.json_schema is None or rf.json_schema.schema_ is None:
        raise InvalidRequest(
            "response_format json_schema needs json_schema.schema", "response_format.json_schema"
        )
    return ("json_schema", _schema_text(rf.json_schema.schema_, "response_format.json_schema"))


def _from_fields(so: StructuredOutputs, name: Callable[[str], str]) -> list[tuple[str, Structured]]:
    """vLLM's fields, spelled `structured_outputs.json` or `guided_json` by `name`."""
    found: list[tuple[str, Structured]] = []
    if so.json_ is not None:
        found.append((name("json"), ("json_schema", _schema_text(so.json_, name("json")))))
    if so.regex is not None:
        found.append((name("regex"), ("regex", _regex(so.regex, name("regex")))))
    if so.choice is not None:
        if not so.choice:
            raise InvalidRequest(f"{name('choice')} needs at least one option", name("choice"))
        found.append((name("choice"), ("choice", json.dumps(so.choice))))
    if so.grammar is not None:
        if not so.grammar.strip():
            raise InvalidRequest(f"{name('grammar')} is empty", name("grammar"))
        found.append((name("grammar"), ("grammar", so.grammar)))
    if so.json_object:
        found.append((name("json_object"), ("json_object", "")))
    return found


def structured_of(req: Any, tools_spec: Structured | None = None) -> Structured | None:
    """The one structured output of a request (None: unconstrained)."""
    found: list[tuple[str, Structured]] = []
    rf = getattr(req, "response_format", None)
    if rf is not None and (got := _from_response_format(rf)) is not None:
        found.append(("response_format", got))
    if req.structured_outputs is not None:
        found += _from_fields(req.structured_outputs, lambda f: f"structured_outputs.{f}")
    legacy = StructuredOutputs.model_construct(
        json_=req.guided_json,
        regex=req.guided_regex,
        choice=req.guided_choice,
        grammar=req.guided_grammar,
    )
    found += _from_fields(legacy, lambda f: f"guided_{f}")
    if tools_spec is not None:
        found.append(("tool_choice", tools_spec))
    if len(found) > 1:
        names = ", ".join(name for name, _ in found)
        raise InvalidRequest(f"give one structured output, not several ({names})", found[1][0])
    return found[0][1] if found else None


def tool_choice_schema(tools: list[Any], mode: str, parallel: bool) -> Structured | None:
    """`required`: a list of {name, arguments} calls; a named function: its arguments."""
    params = {t.function.name: t.function.parameters or {"type": "object"} for t in tools}
    if mode == "auto":
        return None
    if mode != "required":
        return ("json_schema", json.dumps(params[mode]))
    calls = [
        {
            "type": "object",
            "properties": {"name": {"const": name}, "arguments": schema},
            "required": ["name", "arguments"],
        }
        for name, schema in params.items()
    ]
    array: dict[str, Any] = {"type": "array", "items": {"anyOf": calls}, "minItems": 1}
    if not parallel:
        array["maxItems"] = 1
    return ("json_schema", json.dumps(array))


def structured_spec(req: Any, tool_mode: str | None = None) -> StructuredSpec | None:
    """The request's StructuredSpec for the core (None: unconstrained)."""
    tools = None
    if tool_mode is not None:
        tools = tool_choice_schema(req.tools, tool_mode, req.parallel_tool_calls)
    found = structured_of(req, tools)
    return StructuredSpec(*found) if found else None
