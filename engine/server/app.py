"""The OpenAI-compatible HTTP API over the engine core's client (aiohttp).

Handlers are thin: parse and validate the body, render the prompt, submit, then either
collect the choices or stream them as server-sent events. Every failure becomes an
OpenAI-shaped JSON error in one middleware. While draining (SIGTERM) the server admits
nothing new (503) and /health says 503 so load balancers stop sending traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from infleet.engine.adapters import hooks as adapter_hooks
from infleet.engine.errors import InvalidRequest, QueueFull
from infleet.engine.server import auth, errors, router_feed, tokenize
from infleet.engine.server.core_client import CoreClient, CoreGone
from infleet.engine.server.output_processor import RequestOutput
from infleet.engine.server.prepare import (
    Prepared,
    ServedModel,
    parse_json,
    prepare_chat,
    prepare_completion,
)
from infleet.engine.server.prompts import generate_all
from infleet.engine.server.responses import ChatFormat, Choice, CompletionFormat, usage

log = logging.getLogger("infleet.engine.server")


@dataclass(slots=True)
class ServerState:
    draining: bool = False
    in_flight: int = 0  # generation requests being handled (drain waits for 0)


@dataclass(slots=True, frozen=True)
class ServerSettings:
    max_body_bytes: int = 32 << 20
    log_requests: bool = True


CORE = web.AppKey("core", CoreClient)
MODEL = web.AppKey("model", ServedModel)
STATE = web.AppKey("state", ServerState)
SETTINGS = web.AppKey("settings", ServerSettings)
FEED = web.AppKey("router_feed", router_feed.RouterFeed)


def build_app(
    core: CoreClient,
    model: ServedModel,
    settings: ServerSettings,
    state: ServerState | None = None,
    keys: auth.Keys | None = None,
) -> web.Application:
    keys = keys or auth.Keys()
    # aiohttp's own limit stays as a backstop; _read_body answers first, in the OpenAI shape.
    app = web.Application(
        middlewares=[_errors_and_admission, auth.middleware(keys)],
        client_max_size=settings.max_body_bytes,
    )
    app[auth.KEYS] = keys
    app[CORE] = core
    app[MODEL] = model
    app[STATE] = state or ServerState()
    app[SETTINGS] = settings
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app[FEED] = router_feed.install(app, core, model.name, lambda: app[STATE].draining)
    app.router.add_routes(tokenize.routes(lambda r: r.app[MODEL], _json_body))
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
    except CoreGone as err:
        return errors.internal(str(err)).response()
    except web.HTTPException:
        raise
    except Exception:
        log.exception("request %s %s failed", request.method, request.path)
        return errors.internal("internal error while handling the request").response()


async def health(request: web.Request) -> web.Response:
    if request.app[STATE].draining:
        return web.json_response({"status": "draining"}, status=503)
    if not request.app[CORE].healthy:
        return web.json_response({"status": "engine core stopped"}, status=503)
    return web.json_response({"status": "ok"})


async def metrics(request: web.Request) -> web.Response:
    metrics = request.app[CORE].metrics
    body = metrics.render() if metrics is not None else b""
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def models(request: web.Request) -> web.Response:
    model = request.app[MODEL]
    card = {
        "id": model.name,
        "object": "model",
        "created": 0,
        "owned_by": "infleet",
        "root": model.name,  # never the local path the model was loaded from
        "max_model_len": model.max_model_len,
    }
    cards = [card, *adapter_hooks.model_cards(request, model.name)]
    return web.json_response({"object": "list", "data": cards})


async def _read_body(request: web.Request) -> bytes:
    """The body, refused with 413 before it is read when its declared size is over the limit
    (and while it is read, for chunked bodies)."""
    limit = request.app[SETTINGS].max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise errors.body_too_large(limit)
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise errors.body_too_large(limit) from None


async def _json_body(request: web.Request) -> object:
    return parse_json(await _read_body(request))


async def completions(request: web.Request) -> web.StreamResponse:
    body = await _read_body(request)
    lookup = adapter_hooks.lookup(request)
    return await _respond(
        request, await asyncio.to_thread(prepare_completion, request.app[MODEL], body, lookup)
    )


async def chat_completions(request: web.Request) -> web.StreamResponse:
    body = await _read_body(request)
    lookup = adapter_hooks.lookup(request)
    prepared = await asyncio.to_thread(prepare_chat, request.app[MODEL], body, lookup)
    return await _respond(request, prepared)


async def _respond(request: web.Request, prepared: Prepared) -> web.StreamResponse:
    req, prompts, params, fmt = prepared.req, prepared.prompts, prepared.params, prepared.fmt
    num_prompt_tokens = sum(map(len, prompts))
    salt = auth.cache_salt(auth.caller(request).name, req.cache_salt)
    feed = request.app[FEED]
    # The core's block hashes of an adapter request include the adapter (messages.py).
    block_salt = salt if prepared.lora is None else prepared.lora.salted(salt)

    def track(ids: list[int], out: AsyncIterator[RequestOutput]) -> AsyncIterator[RequestOutput]:
        return feed.track(request, ids, block_salt, out)

    # The router's prefix keys header describes one prompt: a list of prompts is not tracked.
    stream = generate_all(
        request.app[CORE],
        prompts,
        params,
        track if len(prompts) == 1 else None,
        priority=req.priority,
        cache_salt=salt,
        lora=prepared.lora,
    )
    if request.app[SETTINGS].log_requests:
        log.info(
            "request %s: %d prompt(s), %d prompt tokens, n=%d, max_tokens=%d, stream=%s",
            request.path,
            len(prompts),
            num_prompt_tokens,
            params.n,
            params.max_tokens,
            req.stream,
        )
    n = len(prompts) * params.n
    async with contextlib.aclosing(stream):  # leaving early aborts and frees the blocks
        if req.stream:
            return await _stream(
                request, stream, fmt, n, num_prompt_tokens, req.include_usage, params.n
            )
        choices = [Choice() for _ in range(n)]
        cached_by_prompt: dict[int, int] = {}
        async for i, out in stream:
            choices[i].add(out)
            cached_by_prompt[i // params.n] = out.num_cached_tokens
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
