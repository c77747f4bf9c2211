"""A fake engine: a real aiohttp server that speaks the engine's HTTP API (OpenAI JSON and
SSE, /health with draining, 503 `draining` refusals) and, when asked, publishes its
state in the router's wire format. It records what reached it, so tests assert on real
traffic: which replica got which request, which streams the client abandoned."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from infleet.api import router_wire as wire


@dataclass
class Seen:
    path: str
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass
class FakeEngine:
    name: str
    model: str = "tiny"
    tokens: int = 4  # tokens per answer
    token_delay: float = 0.0  # seconds between streamed tokens
    draining: bool = False  # /health says draining and generation is refused
    refuse: bool = False  # generation refused as draining while /health still says ok
    adapters: tuple[str, ...] = ()
    publish: bool = False  # serve /router/events
    feed_key: str | None = None  # ...only to this bearer key (the engine's admin key)
    seen: list[Seen] = field(default_factory=list)
    aborted: int = 0  # streams whose client went away before the end
    finished: int = 0
    event_streams: int = 0  # connections to /router/events
    events: asyncio.Queue[wire.Event] | None = None
    url: str = ""
    _runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/health", self.health)
        app.router.add_post("/v1/completions", self.generate)
        app.router.add_post("/v1/chat/completions", self.generate)
        app.router.add_get(wire.EVENTS_PATH, self.router_events)
        return app

    async def start(self) -> str:
        self._runner = web.AppRunner(self.app(), handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def health(self, request: web.Request) -> web.Response:
        if self.draining:
            return web.json_response({"status": "draining"}, status=503)
        return web.json_response({"status": "ok"})

    async def generate(self, request: web.Request) -> web.StreamResponse:
        if self.draining or self.refuse:
            error = {"message": "draining", "type": "server_error", "param": None}
            return web.json_response({"error": {**error, "code": "draining"}}, status=503)
        body = await request.json()
        self.seen.append(
            Seen(request.path, body, {k.lower(): v for k, v in request.headers.items()})
        )
        if body.get("model") != self.model and body.get("model") not in self.adapters:
            error = {"message": "no such model", "type": "invalid_request_error"}
            return web.json_response({"error": {**error, "code": "model_not_found"}}, status=404)
        words = [f"{self.name}-{i}" for i in range(self.tokens)]
        if not body.get("stream"):
            return web.json_response(
                {"object": "text_completion", "model": body["model"], "served_by": self.name,
                 "choices": [{"index": 0, "text": " ".join(words), "finish_reason": "length"}]}
            )  # fmt: skip
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        try:
            for word in words:
                chunk = {"object": "text_completion", "model": body["model"],
                         "choices": [{"index": 0, "text": word, "finish_reason": None}],
                         "sent_at": time.monotonic()}  # fmt: skip
                await resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
                await asyncio.sleep(self.token_delay)
            await resp.write(b"data: [DONE]\n\n")
        except (asyncio.CancelledError, ConnectionResetError):
            self.aborted += 1
            raise
        self.finished += 1
        return resp

    async def router_events(self, request: web.Request) -> web.StreamResponse:
        if not self.publish or self.events is None:
            raise web.HTTPNotFound()
        if self.feed_key and request.headers.get("Authorization") != f"Bearer {self.feed_key}":
            raise web.HTTPUnauthorized()
        self.event_streams += 1
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        while True:
            event = await self.events.get()
            await resp.write(wire.encode_event(event))
