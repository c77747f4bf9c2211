"""The one error a spec can cause at render time: it names the field and says why."""

from __future__ import annotations

from pydantic import ValidationError


class SpecError(ValueError):
    """A spec the schema let through but the operator cannot honour.

    `reason` becomes the Degraded condition's reason; `field` is the spec path
    (camelCase, as the user wrote it) and leads the message.
    """

    def __init__(self, field: str, message: str, reason: str = "InvalidSpec") -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = reason

    def located(self) -> str:
        """The message with the field's full path (spec.* unless it is the metadata's)."""
        return str(self) if self.field.startswith("metadata.") else f"spec.{self}"


def unsupported(kind: str, field: str, what: str) -> SpecError:
    return SpecError(field, f"{what} is not supported by engine {kind}", "UnsupportedByEngine")


def describe(err: ValidationError) -> str:
    """A pydantic error as `field.path: what is wrong` lines, in the user's camelCase."""
    lines = []
    for e in err.errors():
        path = ".".join(str(part) for part in e["loc"])
        message = e["msg"].removeprefix("Value error, ")
        lines.append(f"{path}: {message}" if path else message)
    return "; ".join(lines)
