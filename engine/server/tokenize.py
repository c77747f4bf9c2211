"""vLLM-compatible POST /tokenize and /detokenize.

/tokenize takes `{model, prompt}` (add_special_tokens defaults to true) or `{model,
messages}` (the chat template applied exactly as /v1/chat/completions applies it, tools
included) and answers `{count, max_model_len, tokens}`; /detokenize takes `{model,
tokens}` and answers `{prompt}`. Both need a key when the server has keys.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from pydantic import Field

from infleet.engine.errors import InvalidRequest
from infleet.engine.server import errors
from infleet.engine.server.chat_prompt import chat_prompt
from infleet.engine.server.protocol import ChatMessage, _Strict, parse_request
from infleet.engine.server.tool_request import Tool, ToolChoice


class TokenizeCompletion(_Strict):
    model: str
    prompt: str
    add_special_tokens: bool = True


class TokenizeChat(_Strict):
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    add_generation_prompt: bool = True
    add_special_tokens: bool = False  # chat templates write their own BOS
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None


class Detokenize(_Strict):
    model: str
    tokens: list[int]


def tokenize(body: Any, engine: Any) -> dict[str, Any]:
    """The /tokenize answer; `engine` is the ServedModel (its tokenizer and limits)."""
    kind = TokenizeChat if isinstance(body, dict) and "messages" in body else TokenizeCompletion
    req = parse_request(kind, body)
    _check_model(engine, req.model)
    if isinstance(req, TokenizeChat):
        _, text = chat_prompt(engine.tokenizer, req)
    else:
        text = req.prompt
    ids = engine.tokenizer.encode(text, add_special_tokens=req.add_special_tokens)
    return {"count": len(ids), "max_model_len": engine.max_model_len, "tokens": ids}


def detokenize(body: Any, engine: Any) -> dict[str, Any]:
    req = parse_request(Detokenize, body)
    _check_model(engine, req.model)
    vocab = engine.tokenizer.vocab_size
    bad = next((t for t in req.tokens if not 0 <= t < vocab), None)
    if bad is not None:
        raise InvalidRequest(f"token id {bad} is outside the vocabulary (0..{vocab - 1})", "tokens")
    return {"prompt": engine.tokenizer.decode(req.tokens, skip_special_tokens=False)}


def _check_model(engine: Any, model: str) -> None:
    if model != engine.name:
        raise errors.model_not_found(model)


def routes(engine_of: Any, json_body: Any) -> list[web.RouteDef]:
    """The two routes; `engine_of(request)` gives the ServedModel, `json_body` the parsed
    body. Templating and BPE run in a worker thread, like the generation requests'."""

    async def tokenize_handler(request: web.Request) -> web.Response:
        body = await json_body(request)
        return web.json_response(await asyncio.to_thread(tokenize, body, engine_of(request)))

    async def detokenize_handler(request: web.Request) -> web.Response:
        body = await json_body(request)
        return web.json_response(await asyncio.to_thread(detokenize, body, engine_of(request)))

    return [web.post("/tokenize", tokenize_handler), web.post("/detokenize", detokenize_handler)]
