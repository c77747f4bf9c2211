"""The OpenAI-compatible HTTP API over an `AsyncEngine` (aiohttp).

Handlers are thin: parse and validate the body, render the prompt, submit, then either
collect the choices or stream them as server-sent events. Every failure becomes an
OpenAI-shaped JSON error in one middleware. While draining (SIGTERM) the server admits
nothing new (503) and /health says 503 so load balancers stop sending traffic.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from infleet.engine.async_engine import AsyncEngine
from infleet.engine.errors import InvalidRequest, QueueFull
from infleet.engine.messages import SamplingParams
from infleet.engine.output_processor import RequestOutput
from infleet.engine.server import auth, errors, tokenize
from infleet.engine.server.chat_prompt import chat_prompt
from infleet.engine.server.prompts import EchoFormat, generate_all, prompt_list
from infleet.engine.server.protocol import ChatCompletionRequest, CompletionRequest, parse_request
from infleet.engine.server.responses import ChatFormat, Choice, CompletionFormat, TokenTexts, usage
from infleet.engine.server.tool_output import chat_format
from infleet.engine.structured.request import structured_spec

log = logging.getLogger("infleet.engine.server")


@dataclass(slots=True)
class ServerState:
    draining: bool = False
    in_flight: int = 0  # generation requests being handled (drain waits for 0)


ENGINE = web.AppKey("engine", AsyncEngine)
STATE = web.AppKey("state", ServerState)
TEXTS = web.AppKey("texts", TokenTexts)


def build_app(
    engine: AsyncEngine, state: ServerState | None = None, keys: auth.Keys | None = None
) -> web.Application:
    middlewares = [_errors_and_admission, auth.middleware(keys or auth.Keys())]
    app = web.Application(middlewares=middlewares, client_max_size=32 * 1024 * 1024)
    app[ENGINE] = engine
    app[STATE] = state or ServerState()
    app[TEXTS] = TokenTexts(engine.engine.tokenizer)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_routes(tokenize.routes(lambda r: r.app[ENGINE].engine, _json_body))
    return app


@web.middleware
async def _errors_and_admission(request: web.Request, handler: Any) -> web.StreamResponse:
    state = request.app[STATE]
    generating = request.method == "POST" and request.path.startswith("/v1/")
    try:
        if generating:
            if state.draining:
                raise errors.draining()
            state.in_flight += 1
        try:
            return await handler(request)
        finally:
            if generating:
                state.in_flight -= 1
    except errors.ApiError as err:
        return err.response()
    except InvalidRequest as err:
        return errors.bad_request(str(err), err.param).response()
    except QueueFull as err:
        return errors.queue_full(str(err), err.retry_after).response()
    except web.HTTPException:
        raise
    except Exception:
        log.exception("request %s %s failed", request.method, request.path)
        return errors.internal("internal error while handling the request").response()


async def health(request: web.Request) -> web.Response:
    if request.app[STATE].draining:
        return web.json_response({"status": "draining"}, status=503)
    if not request.app[ENGINE].healthy:
        return web.json_response({"status": "engine stopped"}, status=503)
    return web.json_response({"status": "ok"})


async def metrics(request: web.Request) -> web.Response:
    body = request.app[ENGINE].engine.metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def models(request: web.Request) -> web.Response:
    engine = request.app[ENGINE].engine
    card = {
        "id": engine.model_name,
        "object": "model",
        "created": 0,
        "owned_by": "infleet",
        "root": engine.model_name,  # never the local path the model was loaded from
        "max_model_len": engine.max_model_len,
    }
    return web.json_response({"object": "list", "data": [card]})


async def _json_body(request: web.Request) -> object:
    try:
        return json.loads(await request.read())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise errors.bad_request(f"the request body is not valid JSON: {err}") from None


def _check_model(request: web.Request, model: str) -> None:
    if model != request.app[ENGINE].engine.model_name:
        raise errors.model_not_found(model)


async def completions(request: web.Request) -> web.StreamResponse:
    req: CompletionRequest = parse_request(CompletionRequest, await _json_body(request))
    _check_model(request, req.model)
    tokenizer = request.app[ENGINE].engine.tokenizer
    prompts = [tokenizer.encode(p) if isinstance(p, str) else p for p in prompt_list(req.prompt)]
    params = req.sampling_params(req.max_tokens or 16, req.logprobs, structured_spec(req))
    if req.echo:
        echoed = [tokenizer.decode(ids, skip_special_tokens=False) for ids in prompts]
        fmt = EchoFormat(req.model, request.app[TEXTS], echoed, len(params))
    else:
        fmt = CompletionFormat(req.model, request.app[TEXTS], req.logprobs is not None)
    return await _respond(request, req, prompts, params, fmt)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    req: ChatCompletionRequest = parse_request(ChatCompletionRequest, await _json_body(request))
    _check_model(request, req.model)
    engine = request.app[ENGINE].engine
    tool_mode, text = chat_prompt(engine.tokenizer, req)
    ids = engine.tokenizer.encode(text, add_special_tokens=False)
    # Chat's default is "as much as the context allows", like OpenAI's.
    max_tokens = (
        req.max_completion_tokens or req.max_tokens or max(1, engine.max_model_len - len(ids))
    )
    params = req.sampling_params(max_tokens, req.logprobs_count(), structured_spec(req, tool_mode))
    template = engine.tokenizer.chat_template
    fmt = chat_format(
        req.model, request.app[TEXTS], req.logprobs, tool_mode, template, req.parallel_tool_calls
    )
    return await _respond(request, req, [ids], params, fmt)


async def _respond(
    request: web.Request,
    req: CompletionRequest | ChatCompletionRequest,
    prompts: list[list[int]],
    params: list[SamplingParams],
    fmt: CompletionFormat | ChatFormat,
) -> web.StreamResponse:
    stream = generate_all(
        request.app[ENGINE],
        prompts,
        params,
        priority=req.priority,
        cache_salt=auth.cache_salt(auth.caller(request).name, req.cache_salt),
    )
    n, num_prompt_tokens = len(prompts) * len(params), sum(map(len, prompts))
    async with contextlib.aclosing(stream):  # leaving early aborts and frees the blocks
        if req.stream:
            return await _stream(
                request, stream, fmt, n, num_prompt_tokens, req.include_usage, len(params)
            )
        choices = [Choice() for _ in range(n)]
        cached_by_prompt: dict[int, int] = {}
        async for i, out in stream:
            choices[i].add(out)
            cached_by_prompt[i // len(params)] = out.num_cached_tokens
        cached = sum(cached_by_prompt.values())  # a prompt's choices share its count
        failed = next((c.error for c in choices if c.error), None)
        if failed:
            raise errors.internal(failed)
        completion_tokens = sum(c.num_tokens for c in choices)
        body = fmt.response(choices, usage(num_prompt_tokens, completion_tokens, cached))
        return web.json_response(body)


async def _stream(
    request: web.Request,
    stream: AsyncIterator[tuple[int, RequestOutput]],
    fmt: CompletionFormat | ChatFormat,
    n: int,
    num_prompt_tokens: int,
    include_usage: bool,
    per_prompt: int,
) -> web.StreamResponse:
    resp = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await resp.prepare(request)

    async def send(body: dict[str, Any]) -> None:
        if include_usage and "usage" not in body:
            body["usage"] = None
        await resp.write(b"data: " + json.dumps(body).encode() + b"\n\n")

    if isinstance(fmt, ChatFormat):
        for i in range(n):
            await send(fmt.role_chunk(i))
    completion_tokens, cached = [0] * n, [0] * n
    async for i, out in stream:
        if out.error:
            await send(errors.internal(out.error).body())
            break
        completion_tokens[i] = out.num_output_tokens
        cached[i] = out.num_cached_tokens
        chunk = fmt.chunk(i, out)
        if chunk is not None:
            await send(chunk)
    if include_usage:
        await send(
            fmt.envelope(
                fmt.chunk_object,
                choices=[],
                usage=usage(num_prompt_tokens, sum(completion_tokens), sum(cached[::per_prompt])),
            )
        )
    await resp.write(b"data: [DONE]\n\n")
    await resp.write_eof()
    return resp
