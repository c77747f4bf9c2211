"""The router's HTTP side: an async proxy in front of the replicas (aiohttp).

Per generation request: authenticate (401), read at most the body limit (413), resolve
the model or adapter (404, no replica touched), admit the tenant (429 + Retry-After),
then pick a replica and forward the body as it came. Bytes of the answer go back as they
arrive, so SSE streams keep their pacing. A replica that refuses before answering (503
`draining`, connection refused or dropped before the status line) is suspended and the
request goes to another; so does a request for an adapter that a replica answers 404
`model_not_found` for (not loaded there yet), without suspending it. Once a status line
is relayed, nothing is retried. A client
that hangs up cancels its handler (`handler_cancellation`), which closes the upstream
connection, so the engine aborts the request and frees its KV.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Literal

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from infleet.api.router_wire import PREFIX_KEYS_HEADER
from infleet.api.tenants import DEFAULT_TENANT, KeysFile, Tenant, bearer_token
from infleet.router import errors
from infleet.router.activator import Activator
from infleet.router.adapter_set import AdapterSet
from infleet.router.config import RouterConfig
from infleet.router.limits import TenantLimiter
from infleet.router.metrics import RouterMetrics
from infleet.router.picker import pick
from infleet.router.prefix_keys import canonical_prompt, prefix_keys, salt_of, tie_key, to_hex
from infleet.router.replicas import ReplicaSet

log = logging.getLogger("infleet.router")
GENERATION_PATHS = ("/v1/completions", "/v1/chat/completions")
FORWARDED_HEADERS = ("Authorization", "Content-Type", "Accept", "X-Request-Id")
RELAYED_HEADERS = (
    "Content-Type",
    "Content-Encoding",
    "Cache-Control",
    "Retry-After",
    "X-Request-Id",
)
_CONNECT_FAILURES = (aiohttp.ClientConnectionError, asyncio.TimeoutError, TimeoutError)
STREAMING = web.RequestKey("streaming", bool)  # the relay has started answering
# Without keys every caller is the one tenant, and sees every adapter (as on the engine).
NO_KEYS_CALLER = Tenant(DEFAULT_TENANT, admin=True)
Refusal = Literal["draining", "unreachable", "disconnected", "no_adapter"]


class Router:
    """Everything one router process holds; `app()` serves it."""

    def __init__(self, config: RouterConfig, replicas: ReplicaSet | None = None) -> None:
        self.config = config
        self.replicas = replicas or ReplicaSet()
        self.metrics = RouterMetrics()
        # The set's watch (cli.py) updates it.
        self.adapters = AdapterSet(config.adapters, watched=config.adapter_set is not None)
        self.limiter = TenantLimiter(config.spec)
        self.activator = Activator(self.replicas, config.spec.hold_queue, self.metrics)
        self.keys = KeysFile(config.keys_file) if config.keys_file else None
        self.session: aiohttp.ClientSession | None = None
        self.in_flight = 0  # generation requests being handled (a drain waits for 0)
        self.draining = False

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.config.max_body_bytes)
        for path in GENERATION_PATHS:
            app.router.add_post(path, self.generate)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/health", self.health)
        app.router.add_get("/metrics", self.metrics_page)
        app.router.add_route("*", "/{tail:.*}", self.unknown)
        app.cleanup_ctx.append(self._session_ctx)
        return app

    async def _session_ctx(self, app: web.Application) -> Any:
        # No total timeout: a generation may stream for minutes. Connecting must be quick.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.config.connect_timeout)
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30)
        self.session = aiohttp.ClientSession(
            timeout=timeout, connector=connector, auto_decompress=False
        )
        yield
        await self.session.close()

    # -- the generation path ---------------------------------------------------------

    async def generate(self, request: web.Request) -> web.StreamResponse:
        self.in_flight += 1
        try:
            return await self._generate(request)
        except Exception:
            if request.get(STREAMING):
                raise  # part of the answer went out: the connection is cut instead
            log.exception("request %s failed", request.path)
            return errors.internal().response()
        finally:
            self.in_flight -= 1

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        try:
            caller = self._caller(request)
            tenant = caller.name
            body, raw = await self._body(request)
            model = body.get("model")
            if not isinstance(model, str) or not model:
                raise errors.bad_request("`model` is required and must be a string", "model")
            adapter = self._resolve(model, caller)
            loop = asyncio.get_running_loop()
            admission = self.limiter.admit(tenant, loop.time())
            if not admission.admitted:
                outcome = f"{admission.reason}_limited"
                self.metrics.tenant_requests.labels(tenant, outcome).inc()
                raise errors.rate_limited(tenant, admission.reason, admission.retry_after)
            self.metrics.tenant_requests.labels(tenant, "admitted").inc()
            try:
                salt, prompt = salt_of(tenant, model), canonical_prompt(body)
                keys = prefix_keys(salt, prompt)
                tie = tie_key(salt, prompt, keys)
                return await self._forward(request, raw, keys, tie, adapter)
            finally:
                self.limiter.release(tenant)
        except errors.RouterError as err:
            return err.response()

    def _caller(self, request: web.Request) -> Tenant:
        if self.keys is None:
            return NO_KEYS_CALLER
        found = self.keys.authenticate(bearer_token(request.headers.get("Authorization")))
        if found is None:
            raise errors.unauthorized()
        return found

    async def _body(self, request: web.Request) -> tuple[Mapping[str, Any], bytes]:
        limit = self.config.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise errors.too_large(limit)
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise errors.too_large(limit) from None
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise errors.bad_request(f"the request body is not valid JSON: {err}") from None
        if not isinstance(body, dict):
            raise errors.bad_request("the request body must be a JSON object")
        return body, raw

    def _resolve(self, model: str, caller: Tenant) -> str | None:
        """None for the base model, the adapter's name for an adapter `caller` may use;
        404 otherwise (another tenant's adapter too, as the engine answers)."""
        if model == self.config.model:
            return None
        if self.adapters.accepts(model, caller, self.replicas.published_adapters()):
            return model
        raise errors.model_not_found(model)

    async def _forward(
        self,
        request: web.Request,
        raw: bytes,
        keys: list[int],
        tie: int,
        adapter: str | None,
    ) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.spec.hold_queue.timeout_seconds
        headers = {h: request.headers[h] for h in FORWARDED_HEADERS if h in request.headers}
        # Bytes are relayed as they come: only an encoding the client accepts may come.
        headers["Accept-Encoding"] = request.headers.get("Accept-Encoding", "identity")
        if keys:
            headers[PREFIX_KEYS_HEADER] = ",".join(to_hex(keys))
        tried: set[str] = set()
        missing = False  # some replica answered 404 for the adapter
        for _ in range(self.config.max_attempts):
            await self.activator.wait_for_replica(deadline)
            candidates = [
                replace(c, ready=False) if c.name in tried else c
                for c in self.replicas.candidates(keys, adapter, loop.time())
            ]
            decision = pick(
                candidates,
                request_keys=len(keys),
                wants_adapter=adapter is not None,
                tie_key=tie,
                weights=self.config.weights,
            )
            if decision.replica is None:
                if tried:
                    break  # every usable replica already refused this request
                continue  # the last one went between the wait and the pick: wait again
            self._count(decision.reason, decision.cached_keys, bool(keys))
            name = decision.replica
            self.replicas.started(name, keys, adapter)
            try:
                outcome = await self._relay(request, name, raw, headers, adapter)
            finally:
                self.replicas.finished(name)
            if isinstance(outcome, web.StreamResponse):
                return outcome
            tried.add(name)
            self.metrics.retries.labels(outcome).inc()
            if outcome == "no_adapter":
                assert adapter is not None
                self.replicas.lacks_adapter(name, adapter, loop.time())
                missing = True
            # A closed keep-alive connection or a missing adapter says nothing about the
            # replica's health.
            healthy = outcome in ("disconnected", "no_adapter")
            self.replicas.refused(name, keys, loop.time(), suspend=not healthy)
        if missing:
            assert adapter is not None
            raise errors.model_not_found(adapter)  # no replica that was asked has it
        raise errors.no_replica(
            f"no replica took the request ({len(tried)} refused it: draining or down)"
        )

    def _count(self, reason: str, cached_keys: int, has_keys: bool) -> None:
        self.metrics.decisions.labels(reason).inc()
        if has_keys:
            self.metrics.prefix_lookups.inc()
            if cached_keys:
                self.metrics.prefix_hits.inc()

    async def _relay(
        self,
        request: web.Request,
        name: str,
        raw: bytes,
        headers: dict[str, str],
        adapter: str | None,
    ) -> web.StreamResponse | Refusal:
        """Forward to `name` and relay its answer, or say how it refused before answering."""
        assert self.session is not None
        url = self.replicas.url(name) + request.path
        try:
            upstream = await self.session.post(url, data=raw, headers=headers)
        except aiohttp.ServerDisconnectedError:
            log.info("replica %s closed the connection before answering; retrying", name)
            return "disconnected"
        except _CONNECT_FAILURES as err:
            log.info("replica %s unreachable, retrying elsewhere: %s", name, err)
            return "unreachable"
        try:
            if upstream.status == 503 and await _error_code(upstream) == "draining":
                log.info("replica %s is draining, retrying elsewhere", name)
                return "draining"
            if (
                adapter is not None
                and upstream.status == 404
                and await _error_code(upstream) == "model_not_found"
            ):
                log.info("replica %s lacks adapter %s, retrying elsewhere", name, adapter)
                return "no_adapter"
            relayed = {h: upstream.headers[h] for h in RELAYED_HEADERS if h in upstream.headers}
            if upstream.content_type != "text/event-stream":
                try:
                    body = await upstream.read()
                except aiohttp.ClientError as err:
                    raise errors.upstream_failed(name, err) from None
                return web.Response(status=upstream.status, body=body, headers=relayed)
            response = web.StreamResponse(status=upstream.status, headers=relayed)
            request[STREAMING] = True
            await response.prepare(request)
            try:
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
            except aiohttp.ClientError as err:
                # Tokens already went out: cut the client's connection too, so it sees a
                # failed stream rather than one that looks complete.
                log.warning("replica %s failed mid-stream: %s", name, err)
                if request.transport is not None:
                    request.transport.close()
                return response
            await response.write_eof()
            return response
        finally:
            # On a hang-up (CancelledError) this closes the connection mid-stream, which is
            # how the engine learns to abort; after a full read it goes back to the pool.
            if upstream.content.is_eof():
                upstream.release()
            else:
                upstream.close()

    # -- the rest ----------------------------------------------------------------------

    async def models(self, request: web.Request) -> web.Response:
        try:
            caller = self._caller(request)
        except errors.RouterError as err:
            return err.response()
        published = self.replicas.published_adapters()
        names = [self.config.model, *self.adapters.visible(caller, published)]
        cards = [
            {
                "id": n,
                "object": "model",
                "created": 0,
                "owned_by": "infleet",
                "root": self.config.model,
            }
            for n in names
        ]
        return web.json_response({"object": "list", "data": cards})

    async def health(self, request: web.Request) -> web.Response:
        ready = self.replicas.ready_count(asyncio.get_running_loop().time())
        if self.draining:
            return web.json_response({"status": "draining"}, status=503)
        if not self.adapters.synced:
            return web.json_response({"status": "starting"}, status=503)
        return web.json_response({"status": "ok", "ready_replicas": ready})

    async def metrics_page(self, request: web.Request) -> web.Response:
        self.metrics.ready_replicas.set(
            self.replicas.ready_count(asyncio.get_running_loop().time())
        )
        return web.Response(
            body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def unknown(self, request: web.Request) -> web.Response:
        return errors.not_found(request.path).response()


async def _error_code(upstream: aiohttp.ClientResponse) -> object:
    """The `code` of an OpenAI error body (`draining`: the engine admitted nothing;
    `model_not_found`: it does not have the model or adapter asked for)."""
    try:
        body = await upstream.json(content_type=None)
    except (ValueError, aiohttp.ClientError):
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return error.get("code") if isinstance(error, dict) else None
