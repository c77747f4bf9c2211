"""A chat request's prompt: messages (tool calls and results included) through the
model's chat template. Shared by /v1/chat/completions and /tokenize."""

from __future__ import annotations

from typing import Any

from infleet.engine.server import errors
from infleet.engine.server.tool_request import chat_inputs
from infleet.engine.tokenizer import ChatTemplateError


def chat_prompt(tokenizer: Any, req: Any) -> tuple[str | None, str]:
    """(tool mode, prompt text); a template that rejects the messages is a 400."""
    tool_mode, messages, extra = chat_inputs(req, tokenizer.chat_template)
    try:
        text = tokenizer.apply_chat_template(
            messages, add_generation_prompt=req.add_generation_prompt, **extra
        )
    except ChatTemplateError as err:
        raise errors.bad_request(
            f"the chat template rejected the messages: {err}", "messages"
        ) from None
    return tool_mode, text
