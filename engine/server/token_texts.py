"""Token id -> the text and bytes a logprobs entry shows for it.

The text is the token decoded alone. The bytes are the token's own bytes: for a token that
holds part of a multi-byte character its text is U+FFFD, but its bytes are the real ones
(so a client can join the bytes of consecutive tokens back into the character, which is
what OpenAI's `bytes` field is for). They come from the vocabulary entry: byte-level BPE
(GPT-2, Llama 3, Qwen, SmolLM) spells each byte as one printable character, and
SentencePiece-style vocabularies with byte fallback spell a lone byte as `<0xNN>`.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

_REPLACEMENT = "\ufffd"
_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")


@functools.cache
def byte_level_alphabet() -> dict[str, int]:
    """The character byte-level BPE writes for each byte, mapped back to the byte.

    Printable Latin-1 bytes stand for themselves; the other 68 (controls, space, NBSP,
    soft hyphen) are moved, in byte order, to U+0100 and up so that every byte is visible.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    table = {chr(b): b for b in printable}
    moved = [b for b in range(256) if b not in table.values()]
    table.update({chr(256 + i): b for i, b in enumerate(moved)})
    return table


def _decoder_kinds(backend: Any) -> set[str]:
    """The decoder types in a tokenizers.Tokenizer's pipeline (a Sequence is flattened)."""
    spec = json.loads(backend.to_str()).get("decoder") or {}
    kinds, todo = set(), [spec]
    while todo:
        node = todo.pop()
        kinds.add(node.get("type", ""))
        todo += node.get("decoders") or []
    return kinds


class TokenTexts:
    """Cached per id: the same ids recur in every response."""

    def __init__(self, tokenizer: Any) -> None:
        backend = tokenizer.backend
        kinds = _decoder_kinds(backend)
        self._byte_level = "ByteLevel" in kinds
        self._byte_fallback = "ByteFallback" in kinds
        self._piece = backend.id_to_token
        self.text = functools.lru_cache(maxsize=65536)(
            lambda i: tokenizer.decode([i], skip_special_tokens=False)
        )
        self.bytes = functools.lru_cache(maxsize=65536)(self._bytes)

    def __call__(self, token_id: int) -> str:
        return self.text(token_id)

    def _bytes(self, token_id: int) -> bytes:
        text = self.text(token_id)
        if _REPLACEMENT not in text:
            return text.encode()
        piece = self._piece(token_id) or ""
        alphabet = byte_level_alphabet()
        if self._byte_level and piece and all(c in alphabet for c in piece):
            return bytes(alphabet[c] for c in piece)
        m = _BYTE_PIECE.fullmatch(piece)
        if self._byte_fallback and m:
            return bytes([int(m.group(1), 16)])
        return text.encode()  # the vocabulary really holds U+FFFD (or we cannot tell)
