"""Kubernetes quantities ("16Gi", "500m", 2) as numbers, for flags that take plain units."""

from __future__ import annotations

import math

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
_DECIMAL |= {"P": 1e15, "E": 1e18}


def to_number(quantity: int | str) -> float:
    if isinstance(quantity, int):
        return float(quantity)
    for suffix, scale in (*_BINARY.items(), *_DECIMAL.items()):
        if quantity.endswith(suffix):
            return float(quantity[: -len(suffix)]) * scale
    return float(quantity)


def to_gib(quantity: int | str) -> int:
    """Whole GiB, rounded up (an engine flag in GB must not shrink the user's tier)."""
    return max(1, math.ceil(to_number(quantity) / 2**30))


def as_string(quantity: int | str) -> str:
    """Quantities go into pod specs as strings (the canonical Kubernetes form)."""
    return str(quantity)
