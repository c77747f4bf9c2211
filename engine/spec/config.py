"""`--speculative-config`: vLLM's JSON spelling, parsed into one checked dataclass.

Methods use vLLM's names (`ngram`, `draft_model` with `model`) plus our `self_draft`
(the target's first `num_layers` layers, one checkpoint). `eagle` is refused by name:
it needs trained EAGLE heads, and there is no reference here to test them against.
Every error names the field (`speculative_config.method: ...`), so `infleet serve`
refuses a bad configuration before it loads anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

METHODS = ("ngram", "draft_model", "self_draft")
# Verification computes 1 + k positions per sequence and the sampler walks them one by one;
# beyond this the expected accepted length no longer grows with realistic acceptance.
MAX_SPECULATIVE_TOKENS = 16
_FIELDS = {
    "method", "num_speculative_tokens", "prompt_lookup_max", "prompt_lookup_min", "model",
    "num_layers", "disable_by_batch_size",
}  # fmt: skip


class SpeculativeConfigError(ValueError):
    """A bad --speculative-config; the message starts with the field's name."""

    def __init__(self, field: str, message: str) -> None:
        self.field = f"speculative_config.{field}"
        super().__init__(f"{self.field}: {message}")


@dataclass(slots=True, frozen=True)
class SpeculativeConfig:
    method: str
    num_speculative_tokens: int
    prompt_lookup_max: int = 4  # ngram: the longest suffix looked up in the context
    prompt_lookup_min: int = 2  # ngram: the shortest
    model: str | None = None  # draft_model: a path or URI load_model reads
    num_layers: int = 0  # self_draft: the target's first K layers
    # The load switch (engine/spec/switch.py): never speculate with more running sequences
    # than this; None: the cost model alone decides.
    disable_by_batch_size: int | None = None


def _int(data: dict[str, Any], name: str, default: int | None, low: int, high: int) -> int | None:
    value = data.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpeculativeConfigError(name, f"must be an integer, got {value!r}")
    if not low <= value <= high:
        raise SpeculativeConfigError(name, f"must be in [{low}, {high}], got {value}")
    return value


def parse_speculative_config(raw: str | dict[str, Any]) -> SpeculativeConfig:
    """A JSON text (the flag) or a mapping (a --config file) to a SpeculativeConfig."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as err:
            raise SpeculativeConfigError("(json)", f"not JSON: {err}") from None
    if not isinstance(raw, dict):
        raise SpeculativeConfigError("(json)", f"expected an object, got {type(raw).__name__}")
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        raise SpeculativeConfigError(
            unknown[0], f"unknown field; known: {', '.join(sorted(_FIELDS))}"
        )
    method = raw.get("method")
    if method == "eagle" or method == "eagle3":
        raise SpeculativeConfigError(
            "method", f"{method!r} is not supported by the bundled engine (no EAGLE heads); "
            f"use one of {', '.join(METHODS)}",
        )  # fmt: skip
    if method not in METHODS:
        raise SpeculativeConfigError(
            "method", f"must be one of {', '.join(METHODS)}, got {method!r}"
        )
    k = _int(raw, "num_speculative_tokens", None, 1, MAX_SPECULATIVE_TOKENS)
    if k is None:
        raise SpeculativeConfigError("num_speculative_tokens", "is required")
    lookup_max = _int(raw, "prompt_lookup_max", 4, 1, 64)
    lookup_min = _int(raw, "prompt_lookup_min", min(2, lookup_max), 1, 64)
    assert lookup_max is not None and lookup_min is not None
    if lookup_min > lookup_max:
        raise SpeculativeConfigError(
            "prompt_lookup_min", f"{lookup_min} is above prompt_lookup_max {lookup_max}"
        )
    model = raw.get("model")
    if method == "draft_model":
        if not isinstance(model, str) or not model:
            raise SpeculativeConfigError(
                "model", "method draft_model needs the draft's path or URI"
            )
    elif model is not None:
        raise SpeculativeConfigError(
            "model", f"only method draft_model takes a model, not {method}"
        )
    layers = _int(raw, "num_layers", None, 1, 1 << 10)
    if method == "self_draft" and layers is None:
        raise SpeculativeConfigError("num_layers", "method self_draft needs the number of layers")
    if method != "self_draft" and layers is not None:
        raise SpeculativeConfigError("num_layers", "only method self_draft takes num_layers")
    disable = _int(raw, "disable_by_batch_size", None, 1, 1 << 20)
    return SpeculativeConfig(method, k, lookup_max, lookup_min, model, layers or 0, disable)
