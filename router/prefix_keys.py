"""Prefix keys: what identifies a request's prompt prefix, without a tokenizer.

The router sees JSON, not tokens. It serialises the prompt canonically (chat: tools, then
each message's role and content, in order; completions: the prompt) and cuts the bytes
into `CHUNK_BYTES` chunks; key i is a hash of the salt and every byte up to the end of
chunk i, so it names the whole prefix (like the engine's chained block hashes) and two
requests share key i exactly when they share that much prompt. A multi-turn conversation
re-sends its history, so turn n+1's keys start with turn n's. Only full chunks get a key.

The salt is the tenant and the model or adapter name: the engine salts its KV cache the
same way, so a prefix is only ever shared where the engine would share it.

This module is the one definition of the scheme (named on the wire as
`infleet.api.router_wire.SCHEME`); the engine never computes keys, it echoes the ones the
router sends (docs/router.md).
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Mapping
from typing import Any

CHUNK_BYTES = 256
KEY_TOKENS = CHUNK_BYTES // 4  # tokens a key stands for: BPE averages ~4 bytes a token
MAX_KEYS = 256  # prompts beyond 64 KiB route by their first 64 KiB
_SEP = b"\x1e"  # ASCII record separator: cannot be confused with JSON text


def canonical_prompt(body: Mapping[str, Any]) -> bytes:
    """The request's prompt as bytes whose prefixes follow the conversation's prefixes.

    Never raises: a body of the wrong shape gets few or no keys, and the engine behind
    answers it with the 400 that names the field."""
    if "messages" in body:
        parts = []
        if body.get("tools"):
            parts.append(json.dumps(body["tools"], sort_keys=True).encode())
        messages = body["messages"]
        for message in messages if isinstance(messages, list) else ():
            if not isinstance(message, Mapping):
                continue
            content = message.get("content")
            text = content if isinstance(content, str) else json.dumps(content, sort_keys=True)
            parts.append(f"{message.get('role', '')}\n{text}".encode())
        return _SEP.join(parts) + _SEP
    prompt = body.get("prompt", "")
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]  # a batch of prompts routes by its first
    if isinstance(prompt, str):
        return prompt.encode()
    if isinstance(prompt, list) and all(isinstance(t, int) for t in prompt):
        return struct.pack(f"<{len(prompt)}I", *(t & 0xFFFFFFFF for t in prompt))
    return b""


def prefix_keys(
    salt: str, prompt: bytes, chunk: int = CHUNK_BYTES, limit: int = MAX_KEYS
) -> list[int]:
    """One key per full chunk of `prompt`, each a 64-bit hash of the salt and all chunks up
    to and including its own."""
    h = hashlib.blake2b(salt.encode() + b"\x00", digest_size=8)
    keys = []
    for end in range(chunk, min(len(prompt), chunk * limit) + 1, chunk):
        h.update(prompt[end - chunk : end])
        keys.append(int.from_bytes(h.copy().digest(), "big"))
    return keys


def tie_key(salt: str, prompt: bytes, keys: list[int]) -> int:
    """What the picker breaks ties on: the first key (a conversation's turns agree), or
    for a prompt shorter than a chunk a hash of all of it (short prompts still spread)."""
    if keys:
        return keys[0]
    return int.from_bytes(hashlib.blake2b(salt.encode() + prompt, digest_size=8).digest(), "big")


def salt_of(tenant: str, model: str) -> str:
    return f"{tenant}\x00{model}"


def to_hex(keys: list[int]) -> list[str]:
    return [f"{k:016x}" for k in keys]


def from_hex(keys: list[str]) -> list[int]:
    return [int(k, 16) for k in keys]
