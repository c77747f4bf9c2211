"""Llama 3.x JSON calls: `{"name": ..., "parameters": {...}}`, optionally after
`<|python_tag|>`, several separated by `;` — the whole output is the call(s)."""

from __future__ import annotations

import json

from infleet.engine.server.tool_parsers import ToolCall
from infleet.engine.server.tool_parsers.hermes import call_from_obj

_TAG = "<|python_tag|>"


class Llama3JsonParser:
    name = "llama3_json"
    start = "{"

    def parse(self, text: str) -> tuple[str, list[ToolCall]]:
        body = text.strip().removeprefix(_TAG).strip()
        if not body.startswith("{"):
            return text, []
        calls: list[ToolCall] = []
        decoder = json.JSONDecoder()
        at = 0
        while at < len(body):
            try:
                obj, end = decoder.raw_decode(body, at)
            except json.JSONDecodeError:
                return text, []
            call = call_from_obj(obj)
            if call is None:
                return text, []
            calls.append(call)
            at = end
            while at < len(body) and body[at] in " \n\t;":
                at += 1
        return "", calls
