"""Hermes / Qwen-style calls: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`."""

from __future__ import annotations

import json
import re

from infleet.engine.server.tool_parsers import ToolCall

_CALL = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)


def call_from_obj(obj: object) -> ToolCall | None:
    """`{"name": str, "arguments" (or "parameters"): object}` -> ToolCall, else None."""
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return None
    args = obj.get("arguments", obj.get("parameters", {}))
    if not isinstance(args, dict):
        return None
    return ToolCall(obj["name"], json.dumps(args, ensure_ascii=False))


def call_from_json(body: str) -> ToolCall | None:
    try:
        return call_from_obj(json.loads(body))
    except json.JSONDecodeError:
        return None


class HermesParser:
    name = "hermes"
    start = "<tool_call>"

    def parse(self, text: str) -> tuple[str, list[ToolCall]]:
        calls: list[ToolCall] = []
        kept: list[str] = []
        at = 0
        for m in _CALL.finditer(text):
            call = call_from_json(m.group(1))
            if call is None:
                continue  # not a call after all: it stays in the content
            kept.append(text[at : m.start()])
            calls.append(call)
            at = m.end()
        kept.append(text[at:])
        return "".join(kept).strip() if calls else text, calls
