"""Kubernetes resource quantities ("500m", "16Gi", "2e3", 2): the one grammar and parser.

The CRD schema carries QUANTITY_PATTERN (the API server checks it), the pydantic models
validate with it, and the operator (flags in plain units) and the local control plane
(requests against node capacity) read numbers with `parse_quantity`.
"""

from __future__ import annotations

import math
import re

# resource.Quantity's grammar. Plain groups only: the same string is the CRD's `pattern`.
QUANTITY_PATTERN = r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
_QUANTITY = re.compile(QUANTITY_PATTERN)
_SCALE = {"": 1.0, "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9}
_SCALE |= {"T": 1e12, "P": 1e15, "E": 1e18}
_SCALE |= {f"{p}i": 2.0 ** (10 * (i + 1)) for i, p in enumerate("KMGTPE")}


def is_quantity(value: object) -> bool:
    if isinstance(value, str):
        return _QUANTITY.match(value) is not None
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_quantity(value: int | float | str) -> float:
    """The quantity as a number in its base unit: "500m" -> 0.5, "1Ki" -> 1024.0.
    ValueError for anything else, naming the value."""
    if not is_quantity(value):
        raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. 500m, 2, 16Gi)")
    if not isinstance(value, str):
        return float(value)
    m = _QUANTITY.match(value)
    assert m is not None  # is_quantity matched it
    sign, number, suffix = m.group(1) or "", m.group(2), m.group(6) or ""
    if m.group(8):  # a decimal exponent ("2e3"), which float() reads as is
        return float(sign + number + suffix)
    return float(sign + number) * _SCALE[suffix]


def to_gib(value: int | str) -> int:
    """Whole GiB, rounded up (an engine flag in GB must not shrink the user's tier)."""
    return max(1, math.ceil(parse_quantity(value) / 2**30))
