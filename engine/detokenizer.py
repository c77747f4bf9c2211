"""Token ids to streamed text: incremental decoding and stop strings.

Decoding token by token breaks in two ways: a character whose UTF-8 bytes span several
tokens decodes to U+FFFD until its last byte arrives, and tokenizers that mark word starts
("▁word") drop the space when a token is decoded alone. `IncrementalDetokenizer` decodes a
short window that starts a few tokens back (seeded with the prompt's tail) and emits only
what the window adds once it no longer ends in U+FFFD.

`StopStringFilter` cuts the text at the first stop string, even one spread over several
tokens, and holds back a tail that might still become a stop string, so a streaming
client never sees any part of it.
"""

from __future__ import annotations

from typing import Protocol

_CONTEXT_TOKENS = 5  # prompt tokens the window starts with (word-start spaces)
_REPLACEMENT = "\ufffd"


class Decoder(Protocol):
    def decode(self, ids: list[int], skip_special_tokens: bool = ...) -> str: ...


class IncrementalDetokenizer:
    def __init__(
        self, tokenizer: Decoder, prompt_token_ids: list[int], skip_special_tokens: bool = True
    ):
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self.ids = list(prompt_token_ids[-_CONTEXT_TOKENS:])
        self.prefix_offset = 0  # window start
        self.read_offset = len(self.ids)  # tokens before this are already emitted

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=self.skip_special_tokens)

    def add(self, token_id: int) -> str:
        """Append one token; returns the text it completes (possibly empty)."""
        self.ids.append(token_id)
        return self._emit(final=False)

    def flush(self) -> str:
        """At the end, whatever is left, replacement characters included (the model really
        produced invalid UTF-8)."""
        return self._emit(final=True)

    def _emit(self, final: bool) -> str:
        if self.read_offset == len(self.ids):
            return ""
        prefix_text = self._decode(self.ids[self.prefix_offset : self.read_offset])
        text = self._decode(self.ids[self.prefix_offset :])
        if len(text) <= len(prefix_text) or (text.endswith(_REPLACEMENT) and not final):
            return ""
        self.prefix_offset = self.read_offset
        self.read_offset = len(self.ids)
        return text[len(prefix_text) :]


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
        text is then cut right before it, or right after it with include_stop)."""
        if self.stopped or not delta:
            return self.stopped
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
        longest = min(self.max_stop_len - 1, len(self.text) - self.num_sent)
        for k in range(longest, 0, -1):
            tail = self.text[-k:]
            if any(s.startswith(tail) for s in self.stop):
                return k
        return 0
