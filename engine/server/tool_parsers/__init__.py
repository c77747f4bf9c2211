"""Tool calls out of model text: one parser per chat-template family.

A parser splits a finished output into its plain content and its tool calls
(`parse`), and says where a call may begin (`start`), which is what streaming needs: text
before that marker streams as content, the rest is held until a call is complete.
The family is chosen from the chat template itself (`parser_for`): Hermes/Qwen-style
templates write `<tool_call>`, Llama 3's write `<|python_tag|>` / `ipython`. A template
that knows no tools gets the Hermes format written into the prompt (tool_prompt.py), so
its parser is Hermes too.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ToolCall:
    name: str
    arguments: str  # a JSON object, as OpenAI sends it: a string
    id: str = field(default_factory=lambda: f"call_{uuid.uuid4().hex[:24]}")

    def to_openai(self) -> dict:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


class ToolParser(Protocol):
    name: str
    start: str  # the text that opens the first call

    def parse(self, text: str) -> tuple[str, list[ToolCall]]:
        """(content outside the calls, the calls); text that is not a valid call stays content."""
        ...


def parser_for(chat_template: str | None) -> ToolParser:
    from infleet.engine.server.tool_parsers.hermes import HermesParser
    from infleet.engine.server.tool_parsers.llama3_json import Llama3JsonParser

    template = chat_template or ""
    if "<tool_call>" not in template and ("<|python_tag|>" in template or "ipython" in template):
        return Llama3JsonParser()
    return HermesParser()
