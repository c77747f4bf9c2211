"""OpenAI response bodies for /v1/completions and /v1/chat/completions.

Both endpoints produce the same engine outputs; they differ only in how a choice, a
streamed delta and logprobs are spelled. `CompletionFormat` and `ChatFormat` hold those
spellings; everything else (collecting, streaming, usage) is shared in app.py.
"""

from __future__ import annotations

import functools
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from infleet.engine.messages import TokenLogprobs
from infleet.engine.output_processor import RequestOutput


class TokenTexts:
    """Token id -> its text as a logprobs entry shows it (cached: the same ids recur)."""

    def __init__(self, tokenizer: Any) -> None:
        self._decode = functools.lru_cache(maxsize=65536)(
            lambda i: tokenizer.decode([i], skip_special_tokens=False)
        )

    def __call__(self, token_id: int) -> str:
        return self._decode(token_id)


@dataclass(slots=True)
class Choice:
    """One choice's output so far (non-streaming collects into it)."""

    text: str = ""
    num_tokens: int = 0
    logprobs: list[TokenLogprobs] = field(default_factory=list)
    finish_reason: str | None = None
    error: str | None = None

    def add(self, out: RequestOutput) -> None:
        self.text += out.text
        self.num_tokens = out.num_output_tokens
        self.logprobs += out.logprobs
        if out.finished:
            self.finish_reason, self.error = out.finish_reason, out.error


def usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens},
    }


class _Format:
    object: str
    chunk_object: str
    id_prefix: str

    def __init__(self, model: str, texts: TokenTexts, want_logprobs: bool):
        self.id = f"{self.id_prefix}-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model
        self.texts = texts
        self.want_logprobs = want_logprobs

    def envelope(self, obj: str, **body: Any) -> dict[str, Any]:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model, **body}

    def response(self, choices: list[Choice], usage_body: dict[str, Any]) -> dict[str, Any]:
        body = [self.choice(i, c) for i, c in enumerate(choices)]  # type: ignore[attr-defined]
        return self.envelope(self.object, choices=body, usage=usage_body)


class CompletionFormat(_Format):
    object = chunk_object = "text_completion"
    id_prefix = "cmpl"

    def __init__(self, model: str, texts: TokenTexts, want_logprobs: bool):
        super().__init__(model, texts, want_logprobs)
        self._offsets: dict[int, int] = {}  # per choice: text_offset of its next token

    def logprobs(self, lps: list[TokenLogprobs], index: int = 0) -> dict[str, Any] | None:
        if not self.want_logprobs:
            return None
        tokens = [self.texts(lp.token_id) for lp in lps]
        offsets, at = [], self._offsets.get(index, 0)
        for t in tokens:
            offsets.append(at)
            at += len(t)
        self._offsets[index] = at
        return {
            "tokens": tokens,
            "token_logprobs": [lp.logprob for lp in lps],
            "top_logprobs": [{self.texts(t): v for t, v in lp.top} for lp in lps],
            "text_offset": offsets,
        }

    def choice(self, index: int, c: Choice) -> dict[str, Any]:
        return {
            "index": index,
            "text": c.text,
            "logprobs": self.logprobs(c.logprobs, index),
            "finish_reason": c.finish_reason,
        }

    def chunk(self, index: int, out: RequestOutput) -> dict[str, Any] | None:
        if not (out.text or out.finished or (self.want_logprobs and out.logprobs)):
            return None
        choice = {
            "index": index,
            "text": out.text,
            "logprobs": self.logprobs(out.logprobs, index),
            "finish_reason": out.finish_reason if out.finished else None,
        }
        return self.envelope(self.chunk_object, choices=[choice])


class ChatFormat(_Format):
    object = "chat.completion"
    chunk_object = "chat.completion.chunk"
    id_prefix = "chatcmpl"

    def _entry(self, token_id: int, logprob: float) -> dict[str, Any]:
        text = self.texts(token_id)
        return {"token": text, "logprob": logprob, "bytes": list(text.encode())}

    def logprobs(self, lps: list[TokenLogprobs], index: int = 0) -> dict[str, Any] | None:
        if not self.want_logprobs:
            return None
        content = []
        for lp in lps:
            entry = self._entry(lp.token_id, lp.logprob)
            entry["top_logprobs"] = [self._entry(t, v) for t, v in lp.top]
            content.append(entry)
        return {"content": content}

    def choice(self, index: int, c: Choice) -> dict[str, Any]:
        return {
            "index": index,
            "message": {"role": "assistant", "content": c.text},
            "logprobs": self.logprobs(c.logprobs),
            "finish_reason": c.finish_reason,
        }

    def role_chunk(self, index: int) -> dict[str, Any]:
        delta = {"role": "assistant", "content": ""}
        return self.envelope(
            self.chunk_object,
            choices=[{"index": index, "delta": delta, "logprobs": None, "finish_reason": None}],
        )

    def chunk(self, index: int, out: RequestOutput) -> dict[str, Any] | None:
        if not (out.text or out.finished or (self.want_logprobs and out.logprobs)):
            return None
        choice = {
            "index": index,
            "delta": {"content": out.text} if out.text else {},
            "logprobs": self.logprobs(out.logprobs),
            "finish_reason": out.finish_reason if out.finished else None,
        }
        return self.envelope(self.chunk_object, choices=[choice])
