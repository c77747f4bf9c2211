"""Grammar constraints for structured outputs, on xgrammar (docs/engine.md says why).

The core asks the registered factory (engine/core/logits_processors.py) for one
constraint per request: `fill_bitmask` writes the tokens the grammar allows next into the
request's row of the step's packed bitmask, `accept` advances past the sampled token,
`is_terminated` ends the request with `stop`. JSON is compact (no whitespace outside
strings, `,` and `:` separators), so a small model cannot spend its budget on spaces.

Compiling needs the tokenizer's vocabulary as xgrammar sees it: built once per tokenizer
(about 70 ms for a 49k vocabulary) and kept with its GrammarCompiler, whose own cache
makes a repeated schema free.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import torch
import xgrammar as xgr

COMPACT = (",", ":")
KINDS = ("json_schema", "json_object", "regex", "choice", "grammar")
_compilers: dict[int, tuple[Any, xgr.GrammarCompiler]] = {}
_lock = threading.Lock()


def compiler_for(tokenizer: Any) -> xgr.GrammarCompiler:
    """The GrammarCompiler of an engine Tokenizer (its `backend` is a tokenizers.Tokenizer)."""
    with _lock:
        hit = _compilers.get(id(tokenizer))
        if hit is not None and hit[0] is tokenizer:
            return hit[1]
        vocab = [""] * tokenizer.vocab_size
        for text, i in tokenizer.backend.get_vocab(with_added_tokens=True).items():
            vocab[i] = text
        info = xgr.TokenizerInfo(
            vocab,
            _vocab_type(tokenizer),
            vocab_size=tokenizer.vocab_size,
            stop_token_ids=sorted(tokenizer.eos_token_ids),
        )
        compiler = xgr.GrammarCompiler(info, max_threads=1)
        _compilers[id(tokenizer)] = (tokenizer, compiler)
        return compiler


def _vocab_type(tokenizer: Any) -> xgr.VocabType:
    # GPT-2 style byte-level BPE spells bytes as printable code points (space is "Ġ");
    # SentencePiece spells bytes as <0xNN> and spaces as "▁"; anything else is raw text.
    decoder = json.loads(tokenizer.backend.to_str()).get("decoder") or {}
    kinds = {decoder.get("type")} | {d.get("type") for d in decoder.get("decoders", [])}
    if "ByteLevel" in kinds:
        return xgr.VocabType.BYTE_LEVEL
    if "ByteFallback" in kinds:
        return xgr.VocabType.BYTE_FALLBACK
    return xgr.VocabType.RAW


def compile_spec(kind: str, value: str, tokenizer: Any) -> xgr.CompiledGrammar:
    """Raises ValueError naming what is wrong with the grammar."""
    compiler = compiler_for(tokenizer)
    try:
        if kind == "json_schema":
            return compiler.compile_json_schema(
                value, any_whitespace=False, separators=COMPACT, strict_mode=True
            )
        if kind == "json_object":
            return compiler.compile_json_schema(
                '{"type": "object"}', any_whitespace=False, separators=COMPACT, strict_mode=False
            )
        if kind == "regex":
            return compiler.compile_regex(value)
        if kind == "choice":
            options = json.loads(value)
            return compiler.compile_grammar("root ::= " + " | ".join(map(_literal, options)))
        if kind == "grammar":
            return compiler.compile_grammar(value)
    except (RuntimeError, ValueError) as err:  # xgrammar reports bad input as either
        raise ValueError(f"{kind}: {err}") from None
    raise ValueError(f"unknown structured-output kind {kind!r} (one of {', '.join(KINDS)})")


def _literal(text: str) -> str:
    # An EBNF string literal: JSON's escapes are xgrammar's, \uXXXX included.
    return json.dumps(text, ensure_ascii=True)


class GrammarConstraint:
    """One request's matcher; the RequestConstraint of engine/core/logits_processors.py."""

    def __init__(self, grammar: xgr.CompiledGrammar, vocab_size: int) -> None:
        self._matcher = xgr.GrammarMatcher(grammar)
        self._row = xgr.allocate_token_bitmask(1, vocab_size)  # the tokenizer's width

    def fill_bitmask(self, bitmask: torch.Tensor, row: int) -> None:
        # The model's vocabulary may be padded past the tokenizer's: those ids never match.
        self._matcher.fill_next_token_bitmask(self._row, 0)
        width = self._row.shape[1]
        bitmask[row, :width] = self._row[0]
        bitmask[row, width:] = 0

    def accept(self, token_id: int) -> bool:
        return self._matcher.accept_token(token_id)

    def is_terminated(self) -> bool:
        return self._matcher.is_terminated()


def make_constraint(spec: Any, tokenizer: Any) -> GrammarConstraint:
    """The core's constraint factory: StructuredSpec + the engine Tokenizer."""
    grammar = compile_spec(spec.kind, spec.value, tokenizer)
    return GrammarConstraint(grammar, tokenizer.vocab_size)
