"""Run a router until SIGTERM/SIGINT: serve, discover replicas, follow their state.

On SIGTERM the router drains like the engine: /health turns 503 (its own Service stops
sending), requests in flight finish within the grace period, then it exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web

from infleet.router.follower import follow_all
from infleet.router.proxy import Router

log = logging.getLogger("infleet.router")
KEYS_REFRESH_SECONDS = 2.0
Discover = Callable[[Router], Coroutine[Any, Any, None]]


async def _refresh_keys(router: Router) -> None:
    while router.keys is not None:
        await asyncio.sleep(KEYS_REFRESH_SECONDS)
        router.keys.refresh()


async def run_router(
    router: Router,
    discover: Discover,
    host: str,
    port: int,
    *,
    grace_seconds: float = 30.0,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> int:
    loop = asyncio.get_running_loop()
    if stop is None:
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(
        router.app(), handler_cancellation=True, access_log=None, shutdown_timeout=1.0
    )
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    assert router.session is not None
    tasks = [
        asyncio.create_task(discover(router)),
        asyncio.create_task(follow_all(router.replicas, router.session, router.config.admin_key)),
        asyncio.create_task(_refresh_keys(router)),
    ]
    bound_host, bound_port = runner.addresses[0][:2]
    url = (
        f"http://[{bound_host}]:{bound_port}"
        if ":" in bound_host
        else f"http://{bound_host}:{bound_port}"
    )
    log.info("routing %s at %s/v1", router.config.model, url)
    if on_ready is not None:
        on_ready(url)
    await stop.wait()

    router.draining = True
    deadline = loop.time() + grace_seconds
    log.info("draining: %d requests in flight", router.in_flight)
    while router.in_flight and loop.time() < deadline:
        await asyncio.sleep(0.05)
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await runner.cleanup()
    log.info("stopped")
    return 0
