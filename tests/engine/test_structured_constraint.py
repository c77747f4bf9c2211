"""The xgrammar constraint over SmolLM2's real tokenizer: whatever allowed tokens a model
picks, they spell a document of the requested shape, compact, and then only eos."""

from __future__ import annotations

import json
import random
import re

import jsonschema
import pytest
import torch

from infleet.engine.structured.constraint import compile_spec, make_constraint
from tests.engine.serving import smollm2

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "active": {"type": "boolean"},
        "role": {"enum": ["admin", "user", "guest"]},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 6}, "maxItems": 3},
        "address": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 12}, "zip": {"type": "integer"}},
            "required": ["city", "zip"],
        },
    },
    "required": ["name", "age", "active", "role", "tags", "address"],
}


class Spec:
    def __init__(self, kind: str, value: str):
        self.kind, self.value = kind, value


def unpack(bitmask: torch.Tensor, vocab: int) -> torch.Tensor:
    bits = torch.arange(32, dtype=torch.int32)
    return ((bitmask.unsqueeze(-1) >> bits) & 1).bool().flatten(1)[:, :vocab]


def generate(kind: str, value: str, seed: int, padded: int = 0, steps: int = 400) -> str:
    """Pick random allowed tokens (the worst a model can do) until only eos is allowed."""
    tok = smollm2().tokenizer
    vocab = tok.vocab_size + padded  # a model vocabulary padded past the tokenizer's
    constraint = make_constraint(Spec(kind, value), tok)
    rng = random.Random(seed)
    (eos,) = tok.eos_token_ids
    out: list[int] = []
    for _ in range(steps):
        bitmask = torch.full((2, -(-vocab // 32)), -1, dtype=torch.int32)
        constraint.fill_bitmask(bitmask, 1)
        allowed = unpack(bitmask, vocab)[1]
        assert not allowed[tok.vocab_size :].any()  # padding ids never match
        if allowed[eos] and allowed.sum() == 1:
            return tok.decode(out)
        token = rng.choice(allowed.nonzero().flatten().tolist())  # any allowed token
        assert constraint.accept(token)
        out.append(token)
    raise AssertionError(f"no end after {steps} tokens: {tok.decode(out)!r}")


@pytest.mark.parametrize("seed", range(4))
def test_nested_schema_documents_validate_and_are_compact(seed):
    text = generate("json_schema", json.dumps(SCHEMA), seed, padded=64)
    doc = json.loads(text)
    jsonschema.validate(doc, SCHEMA)
    assert text == json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def test_regex_and_choice():
    assert re.fullmatch(r"[0-9]{3}-[a-z]{2}", generate("regex", "[0-9]{3}-[a-z]{2}", 1))
    options = ["yes", "no", 'say "maybe"']
    assert {generate("choice", json.dumps(options), s) for s in range(12)} <= set(options)


def test_grammar_and_rejected_tokens():
    text = generate("grammar", 'root ::= "(" [a-c]+ ")"', 2, steps=60)
    assert re.fullmatch(r"\([a-c]+\)", text)
    tok = smollm2().tokenizer
    c = make_constraint(Spec("json_schema", json.dumps(SCHEMA)), tok)
    assert not c.accept(tok.encode("hello", add_special_tokens=False)[0])


@pytest.mark.parametrize(
    ("kind", "value"),
    [("json_schema", "{not json"), ("regex", "(unclosed"), ("grammar", "root ::= ("), ("x", "")],
)
def test_bad_grammars_are_value_errors(kind, value):
    with pytest.raises(ValueError, match=kind):
        compile_spec(kind, value, smollm2().tokenizer)
