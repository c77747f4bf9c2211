"""The response side of tool calling: generated text -> `content` and `tool_calls`.

`auto`: the parser of the template's family finds calls in the text. Streamed, text
before a call's opening marker goes out as content at once; from the marker on it is held
and parsed when the choice finishes (a held-back partial marker too, so `<tool_` never
leaks). `required` and a named function are grammar-forced (structured.py): the output is
the JSON itself, a list of {name, arguments} or the named function's arguments, so the
named function's arguments stream as they are generated, as OpenAI sends them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from infleet.engine.server.output_processor import RequestOutput
from infleet.engine.server.responses import ChatFormat, Choice
from infleet.engine.server.token_texts import TokenTexts
from infleet.engine.server.tool_parsers import ToolCall, ToolParser, parser_for


@dataclass(slots=True)
class _ChoiceState:
    held: str = ""  # text not yet sent: a possible marker prefix, or everything after one
    holding: bool = False  # a call has begun
    calls: int = 0  # tool_calls sent so far
    named_id: str | None = None


class ToolChatFormat(ChatFormat):
    """ChatFormat whose choices carry tool calls; `mode` is tool_request.tool_mode's."""

    def __init__(
        self,
        model: str,
        texts: TokenTexts,
        want_logprobs: bool,
        mode: str,
        parser: ToolParser,
        parallel: bool = True,
    ):
        super().__init__(model, texts, want_logprobs)
        self.mode, self.parser, self.parallel = mode, parser, parallel
        self._states: dict[int, _ChoiceState] = {}

    def split(self, text: str) -> tuple[str | None, list[ToolCall]]:
        """A whole output -> (content or None, calls)."""
        if self.mode == "auto":
            content, calls = self.parser.parse(text)
            if not self.parallel:  # parallel_tool_calls: false keeps the first call
                calls = calls[:1]
            return (content or None) if calls else content, calls
        if self.mode == "required":
            try:
                items = json.loads(text)
            except json.JSONDecodeError:
                return text, []
            calls = [
                ToolCall(c["name"], json.dumps(c["arguments"], ensure_ascii=False))
                for c in items
                if isinstance(c, dict) and "name" in c and isinstance(c.get("arguments"), dict)
            ]
            return (None, calls) if calls else (text, [])
        return None, [ToolCall(self.mode, text)]

    def choice(self, index: int, c: Choice) -> dict[str, Any]:
        body = super().choice(index, c)
        content, calls = self.split(c.text)
        body["message"]["content"] = content
        if calls:
            body["message"]["tool_calls"] = [call.to_openai() for call in calls]
            body["finish_reason"] = _finish(c.finish_reason)
        return body

    def chunk(self, index: int, out: RequestOutput) -> dict[str, Any] | None:
        st = self._states.setdefault(index, _ChoiceState())
        delta: dict[str, Any] = {}
        if self.mode in ("auto", "required"):
            content, calls = self._feed(st, out.text, out.finished)
        else:
            content, calls = None, self._named(st, out.text)
        if content:
            delta["content"] = content
        if calls:
            delta["tool_calls"] = calls
        if not (delta or out.finished or (self.want_logprobs and out.logprobs)):
            return None
        reason = out.finish_reason if out.finished else None
        if out.finished and st.calls:
            reason = _finish(reason)
        choice = {
            "index": index,
            "delta": delta,
            "logprobs": self.logprobs(out.logprobs),
            "finish_reason": reason,
        }
        return self.envelope(self.chunk_object, choices=[choice])

    def _feed(self, st: _ChoiceState, text: str, finished: bool) -> tuple[str, list[dict]]:
        st.held += text
        start = "" if self.mode == "required" else self.parser.start
        if not st.holding:
            at = st.held.find(start) if start else 0
            if at >= 0:
                st.holding = True
                sent, st.held = st.held[:at], st.held[at:]
            else:  # send all but a tail that may still become the marker
                keep = _partial_suffix(st.held, start)
                sent, st.held = st.held[: len(st.held) - keep], st.held[len(st.held) - keep :]
            if not finished:
                return sent, []
        else:
            sent = ""
        if not finished:
            return sent, []
        content, calls = self.split(st.held)
        st.held = ""
        deltas = [{"index": st.calls + k, **call.to_openai()} for k, call in enumerate(calls)]
        st.calls += len(calls)
        return sent + (content or ""), deltas

    def _named(self, st: _ChoiceState, text: str) -> list[dict]:
        if st.named_id is None:
            st.named_id = ToolCall(self.mode, "").id
            st.calls = 1
            head = {"name": self.mode, "arguments": text}
            return [{"index": 0, "id": st.named_id, "type": "function", "function": head}]
        return [{"index": 0, "function": {"arguments": text}}] if text else []


def _finish(reason: str | None) -> str | None:
    return "tool_calls" if reason == "stop" else reason


def _partial_suffix(text: str, marker: str) -> int:
    """The length of the longest tail of `text` that is a proper prefix of `marker`."""
    for n in range(min(len(marker) - 1, len(text)), 0, -1):
        if marker.startswith(text[-n:]):
            return n
    return 0


def chat_format(
    model: str,
    texts: TokenTexts,
    want_logprobs: bool,
    mode: str | None,
    template: str | None,
    parallel: bool = True,
) -> ChatFormat:
    if mode is None:
        return ChatFormat(model, texts, want_logprobs)
    return ToolChatFormat(model, texts, want_logprobs, mode, parser_for(template), parallel)
