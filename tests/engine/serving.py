"""Helpers for serving tests: the shared SmolLM2 model and an in-process server thread."""

from __future__ import annotations

import asyncio
import functools
import threading

from infleet.engine.args import EngineArgs
from infleet.engine.llm_engine import LLMEngine
from infleet.engine.loader import LoadedModel, load_model
from infleet.engine.server.run import serve

SMOLLM2 = "smollm2-135m-instruct"


@functools.cache
def smollm2() -> LoadedModel:
    """Loaded once per test session (about two seconds); engines share its weights."""
    return load_model("builtin:" + SMOLLM2, device="cpu", dtype="float32")


def smollm2_args(**overrides) -> EngineArgs:
    return EngineArgs(device="cpu", dtype="float32", kv_cache_memory=128 << 20, **overrides)


def smollm2_engine(**overrides) -> LLMEngine:
    return LLMEngine(smollm2_args(**overrides), smollm2())


class ServerThread:
    """`serve()` on a free port in a background thread; a context manager.

    With an engine, its core runs in a thread of this process (tests can reach into it);
    with only args, the core runs in its own child process, as under `infleet serve`.
    Leaving the block drains and stops the server the way SIGTERM does."""

    def __init__(self, engine: LLMEngine | None = None, args: EngineArgs | None = None):
        assert (engine is None) != (args is None)
        self.engine = engine
        self.args = args if args is not None else engine.args
        self.url = ""
        self.exit_code: int | None = None
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        async def main() -> int:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            args = self.args
            args.host, args.port = "127.0.0.1", 0
            core = self.engine.core if self.engine is not None else None
            return await serve(args, core=core, stop=self._stop, on_ready=self._on_ready)

        self.exit_code = asyncio.run(main())

    def _on_ready(self, url: str) -> None:
        self.url = url
        self._ready.set()

    def __enter__(self) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(60):
            raise RuntimeError("the server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)
