"""Token ids to streamed text: incremental decoding and stop strings (API process).

Decoding token by token breaks in two ways: a character whose UTF-8 bytes span several
tokens decodes to U+FFFD until its last byte arrives, and tokenizers that mark word starts
("▁word") drop the space when a token is decoded alone. `IncrementalDetokenizer` therefore
decodes a short window of recent tokens (seeded with the prompt's tail) and emits what the
window's text gained, minus trailing U+FFFD that a later byte may still complete.

It costs one `decode` per new token: the window's text length before the token is
remembered, not decoded again. Every `_WINDOW - _KEEP` tokens the window slides forward
(one more decode, of the few tokens it keeps), so each decode stays short.

`StopStringFilter` cuts the text at the first stop string, even one spread over several
tokens, and holds back a tail that might still become a stop string, so a streaming client
never sees any part of it. Stop strings are limited in number and length (checked at the
request boundary, `check_stop_strings`), so the held-back tail and the per-token search
are bounded.
"""

from __future__ import annotations

from typing import Protocol

from infleet.engine.errors import InvalidRequest

_CONTEXT_TOKENS = 5  # prompt tokens the window starts with (word-start spaces)
_WINDOW = 32  # tokens decoded at most per step
_KEEP = 8  # tokens kept as context when the window slides
_REPLACEMENT = "\ufffd"
MAX_STOP_STRINGS = 16
MAX_STOP_LENGTH = 256  # characters; bounds the hold-back and the per-token search


class Decoder(Protocol):
    def decode(self, ids: list[int], skip_special_tokens: bool = ...) -> str: ...


class IncrementalDetokenizer:
    def __init__(
        self, tokenizer: Decoder, prompt_token_ids: list[int], skip_special_tokens: bool = True
    ):
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self.ids: list[int] = []
        self.emitted = 0  # characters of the window's text already handed out (or context)
        self._reset_window(list(prompt_token_ids[-_CONTEXT_TOKENS:]))

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=self.skip_special_tokens)

    def _reset_window(self, ids: list[int]) -> None:
        # A trailing U+FFFD may be a character still in progress: it is not counted as
        # emitted, so its completed form is emitted when the rest of its bytes arrive.
        self.ids = ids
        self.emitted = len(self._decode(ids).rstrip(_REPLACEMENT)) if ids else 0

    def add(self, token_id: int) -> str:
        """Append one token; returns the text it completes (possibly empty)."""
        self.ids.append(token_id)
        return self._emit(final=False)

    def flush(self) -> str:
        """At the end, whatever is left, replacement characters included (the model really
        produced invalid UTF-8)."""
        return self._emit(final=True)

    def _emit(self, final: bool) -> str:
        if not self.ids:
            return ""
        text = self._decode(self.ids)
        end = len(text) if final else len(text.rstrip(_REPLACEMENT))
        if end <= self.emitted:
            return ""
        new = text[self.emitted : end]
        self.emitted = end
        if len(self.ids) > _WINDOW and not final:
            self._reset_window(self.ids[-_KEEP:])
        return new


def check_stop_strings(stop: tuple[str, ...]) -> None:
    """Raise InvalidRequest (400, param `stop`) for stop strings over the limits."""
    if len(stop) > MAX_STOP_STRINGS:
        raise InvalidRequest(
            f"stop: at most {MAX_STOP_STRINGS} stop strings, got {len(stop)}", "stop"
        )
    longest = max((len(s) for s in stop), default=0)
    if longest > MAX_STOP_LENGTH:
        raise InvalidRequest(
            f"stop: a stop string may be at most {MAX_STOP_LENGTH} characters, got {longest}",
            "stop",
        )


class StopStringFilter:
    """Accumulates a sequence's text; finds stop strings; says what is safe to stream."""

    def __init__(self, stop: tuple[str, ...], include_stop: bool = False):
        self.stop = tuple(s for s in stop if s)
        self.include_stop = include_stop  # include_stop_str_in_output: keep the stop string
        self.max_stop_len = max((len(s) for s in self.stop), default=0)
        self.text = ""
        self.num_sent = 0  # characters already handed to the client
        self.stopped = False

    def add(self, delta: str) -> bool:
        """Append decoded text; returns True when a stop string ended the sequence (the
        text is then cut right before it)."""
        if self.stopped or not delta:
            return self.stopped
        # Only a match that ends inside the new text is new: search from where it could start.
        start = max(0, len(self.text) - self.max_stop_len + 1)
        self.text += delta
        if not self.stop:
            return False
        hits = [(i, len(s)) for s in self.stop if (i := self.text.find(s, start)) >= 0]
        if hits:
            at, length = min(hits)
            self.text = self.text[: at + (length if self.include_stop else 0)]
            self.stopped = True
        return self.stopped

    def take(self, finished: bool) -> str:
        """Text not yet streamed, minus a tail that could still start a stop string."""
        end = len(self.text) if finished or self.stopped else len(self.text) - self._held_back()
        if end <= self.num_sent:
            return ""
        out = self.text[self.num_sent : end]
        self.num_sent = end
        return out

    def _held_back(self) -> int:
        """Length of the longest unsent tail of the text that is a prefix of a stop string."""
        held = 0
        for s in self.stop:
            # Candidate starts are the places the stop's first character occurs in the last
            # len(s) - 1 unsent characters; the earliest one that fits holds back the most.
            i = self.text.find(s[0], max(self.num_sent, len(self.text) - len(s) + 1))
            while i != -1 and len(self.text) - i > held:
                if s.startswith(self.text[i:]):
                    held = len(self.text) - i
                    break
                i = self.text.find(s[0], i + 1)
        return held
