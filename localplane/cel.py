"""CEL rules of `x-kubernetes-validations`, evaluated with cel-python (`celpy`)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import celpy


class CelError(Exception):
    """A rule that does not compile or fails to evaluate (not the same as evaluating false)."""


_ENV = celpy.Environment()


@lru_cache(maxsize=1024)
def _program(rule: str) -> Any:
    try:
        return _ENV.program(_ENV.compile(rule))
    except Exception as err:  # celpy raises its own parse errors
        raise CelError(f"compilation failed: {err}") from err


def evaluate(rule: str, value: Any, old_value: Any = None, *, has_old: bool = False) -> Any:
    """The rule's result with `self` (and `oldSelf` for transition rules) bound."""
    activation = {"self": celpy.json_to_cel(value)}
    if has_old:
        activation["oldSelf"] = celpy.json_to_cel(old_value)
    try:
        result = _program(rule).evaluate(activation)
    except CelError:
        raise
    except Exception as err:
        raise CelError(str(err)) from err
    if isinstance(result, celpy.CELEvalError):
        raise CelError(str(result.args[0] if result.args else result))
    return result
