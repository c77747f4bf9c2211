"""A Tokenizer rebuilt from the vocabulary stored in a GGUF file's metadata.

Supports byte-level BPE (`tokenizer.ggml.model == "gpt2"`) with the pre-tokenizers named
in `tokenizer.ggml.pre` that we have checked against the original tokenizer: GPT-2's and
SmolLM's (GPT-2's, digits split one by one).
"""

from __future__ import annotations

from typing import Any

import tokenizers
from tokenizers import AddedToken, decoders, models, pre_tokenizers, processors

from infleet.engine.model_config import ModelLoadError
from infleet.engine.tokenizer import Tokenizer

_CONTROL = 3  # llama.cpp token type of special tokens (<|im_start|>, <|endoftext|>, ...)


def _pre_tokenizer(name: str) -> pre_tokenizers.PreTokenizer:
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if name in ("default", "gpt2"):
        return byte_level
    if name == "smollm":
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    raise ModelLoadError(
        f"GGUF tokenizer.ggml.pre={name!r} is not supported; supported: default, gpt2, smollm"
    )


def tokenizer_from_gguf(meta: dict[str, Any]) -> Tokenizer:
    kind = meta.get("tokenizer.ggml.model")
    if kind != "gpt2":
        raise ModelLoadError(
            f"GGUF tokenizer.ggml.model={kind!r} is not supported; only byte-level BPE ('gpt2')"
        )
    tokens: list[str] = meta["tokenizer.ggml.tokens"]
    types: list[int] = meta.get("tokenizer.ggml.token_type", [1] * len(tokens))
    merges = [tuple(m.split(" ", 1)) for m in meta.get("tokenizer.ggml.merges", [])]
    bpe = models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges)
    backend = tokenizers.Tokenizer(bpe)
    backend.pre_tokenizer = _pre_tokenizer(meta.get("tokenizer.ggml.pre", "default"))
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(
        [
            AddedToken(t, special=True, normalized=False)
            for t, k in zip(tokens, types, strict=True)
            if k == _CONTROL
        ]
    )

    def token(key: str) -> str | None:
        index = meta.get(f"tokenizer.ggml.{key}_token_id")
        return tokens[index] if index is not None and index < len(tokens) else None

    bos = token("bos")
    if meta.get("tokenizer.ggml.add_bos_token", False) and bos is not None:
        backend.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tokens.index(bos))]
        )
    # End-of-turn ids end generation as well as end-of-text.
    eos_ids = {
        meta[k] for k in ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id") if k in meta
    }
    return Tokenizer(
        backend,
        bos_token=bos,
        eos_token=token("eos"),
        eos_token_ids=eos_ids,
        chat_template=meta.get("tokenizer.chat_template"),
    )
