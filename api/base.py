"""The building blocks every CRD model shares: camelCase aliases, quantities, CEL rules.

A cross-field rule is written once as a `Rule`: its CEL expression goes into the CRD
(`x-kubernetes-validations`, checked by the API server) and its Python twin runs in the
pydantic validator (the operator's and `infleet render`'s backstop), both with the same
message, so a user sees the same sentence wherever the rule catches them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema, model_validator
from pydantic.alias_generators import to_camel

from infleet.api.quantity import QUANTITY_PATTERN, parse_quantity


def _check_quantity(value: int | str) -> int | str:
    parse_quantity(value)  # raises ValueError naming the value
    return value


# An int or a quantity string; the CRD schema renders it as x-kubernetes-int-or-string.
Quantity = Annotated[
    int | str,
    AfterValidator(_check_quantity),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string", "pattern": QUANTITY_PATTERN}],
            "x-kubernetes-int-or-string": True,
        }
    ),
]


@dataclass(frozen=True, slots=True)
class Rule:
    """One cross-field rule: `cel` for the API server, `check` for Python, one message."""

    cel: str
    message: str
    check: Callable[[Any], bool]


def _add_rules(schema: dict[str, Any], cls: type[CrdModel]) -> None:
    rules = cls.__dict__.get("RULES", ())
    if rules:
        schema["x-kubernetes-validations"] = [{"rule": r.cel, "message": r.message} for r in rules]


class CrdModel(BaseModel):
    """Base of every spec/status model: camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        json_schema_extra=_add_rules,
        validate_default=True,
    )
    RULES: ClassVar[tuple[Rule, ...]] = ()

    @model_validator(mode="after")
    def _check_rules(self) -> CrdModel:
        for rule in type(self).__dict__.get("RULES", ()):
            if not rule.check(self):
                raise ValueError(rule.message)
        return self

    def to_wire(self) -> dict[str, Any]:
        """The JSON shape Kubernetes stores: camelCase, unset optional fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def field(default: Any = ..., description: str = "", **kwargs: Any) -> Any:
    """`Field` with a required description: it becomes the CRD's `kubectl explain` text."""
    if not description:
        raise ValueError("every CRD field needs a description")
    if "default_factory" in kwargs:
        return Field(description=description, **kwargs)
    return Field(default, description=description, **kwargs)
