"""A background event loop that runs fake engines and a real router (real sockets), so
tests drive them with ordinary blocking clients: httpx and the openai SDK."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from infleet.router.config import RouterConfig
from infleet.router.discovery import poll_static
from infleet.router.proxy import Router
from infleet.router.run import Discover, run_router
from tests.router.fake_engine import FakeEngine

T = TypeVar("T")


class Loop:
    """An asyncio loop in a daemon thread; `run` executes a coroutine on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def static_discovery(urls: list[str], interval: float = 0.1) -> Discover:
    async def discover(router: Router) -> None:
        assert router.session is not None
        await poll_static(router.replicas, urls, router.session, interval)

    return discover


class RunningRouter:
    """`run_router` on the loop, at a free port; `stop()` drains it like SIGTERM."""

    def __init__(self, loop: Loop, config: RouterConfig, discover: Discover) -> None:
        self.loop = loop
        self.router = Router(config)
        self._stop = asyncio.Event()
        ready: asyncio.Future[str] = loop.loop.create_future()

        def on_ready(url: str) -> None:
            ready.set_result(url)

        coro = run_router(
            self.router, discover, "127.0.0.1", 0, grace_seconds=5, stop=self._stop,
            on_ready=on_ready,
        )  # fmt: skip
        self.done = asyncio.run_coroutine_threadsafe(coro, loop.loop)

        async def wait_ready() -> str:
            return await ready

        self.url = loop.run(wait_ready())

    def metrics(self) -> str:
        return self.router.metrics.render().decode()

    def stop(self) -> None:
        self.loop.loop.call_soon_threadsafe(self._stop.set)
        self.done.result(30)


def start_engines(loop: Loop, engines: list[FakeEngine]) -> list[str]:
    async def start_all() -> list[str]:
        for engine in engines:
            engine.events = asyncio.Queue()
        return [await e.start() for e in engines]

    return loop.run(start_all())


def wait_until(loop: Loop, predicate: Any, timeout: float = 10) -> None:
    """Poll `predicate()` on the loop's thread until true (the router's state lives there)."""

    async def poll() -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError("condition not met in time")
            await asyncio.sleep(0.02)

    loop.run(poll(), timeout + 5)
