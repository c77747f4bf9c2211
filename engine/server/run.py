"""Run the HTTP server until SIGTERM/SIGINT, then drain and exit cleanly.

Draining is what rolling updates and spot notices rely on: /health turns 503 at once (the
endpoint leaves the Service), new requests get 503, requests already running finish
within `--shutdown-grace-seconds`, and only then does the process exit (status 0).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

from aiohttp import web

from infleet.engine.args import EngineArgs
from infleet.engine.async_engine import AsyncEngine
from infleet.engine.llm_engine import LLMEngine
from infleet.engine.server.app import ServerState, build_app
from infleet.engine.server.auth import Keys

log = logging.getLogger("infleet.engine.server")


def url_of(runner: web.AppRunner) -> str:
    host, port = runner.addresses[0][:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def serve(
    engine: LLMEngine,
    args: EngineArgs,
    *,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> int:
    """Serve until `stop` is set (by SIGTERM/SIGINT when not given), then drain."""
    loop = asyncio.get_running_loop()
    keys = Keys.from_flags(
        args.api_key, args.api_keys_file, args.admin_api_key, args.metrics_require_key
    )
    if stop is None:
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    async_engine = AsyncEngine(engine, args.max_queue)
    async_engine.start()
    state = ServerState()
    # handler_cancellation: a client that hangs up cancels its handler, which aborts its
    # request and frees its KV blocks right away.
    runner = web.AppRunner(
        build_app(async_engine, state, keys),
        handler_cancellation=True,
        access_log=None,
        shutdown_timeout=1.0,
    )
    await runner.setup()
    await web.TCPSite(runner, args.host, args.port).start()
    url = url_of(runner)
    log.info("serving %s at %s/v1", engine.model_name, url)
    if on_ready is not None:
        on_ready(url)
    await stop.wait()

    state.draining = True
    grace = args.shutdown_grace_seconds
    log.info("draining: %d requests in flight, waiting up to %.0fs", state.in_flight, grace)
    deadline = loop.time() + grace
    while state.in_flight and loop.time() < deadline:
        await asyncio.sleep(0.05)
    if state.in_flight:
        log.warning("grace period over: aborting %d requests", state.in_flight)
    await runner.cleanup()
    await async_engine.stop()
    log.info("stopped")
    return 0
