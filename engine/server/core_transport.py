"""How the API process reaches the engine core: its own process, or a thread (in-process).

Both run the same core loop (core_loop.py) and offer the same three things to the
`CoreClient`: `send(message)`, a callback per message from the core, and a callback when
the core is gone (its process exited, or its thread ended). `ProcessCore` is what
`infleet serve` uses; `ThreadCore` keeps an in-process engine behind the same server for
tests that reach into the core (fault injection, scheduler state) and for single-process
use.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import socket
import subprocess
import sys
import threading
from collections.abc import Callable

import msgspec

from infleet.engine.args import EngineArgs
from infleet.engine.core.engine_core import EngineCore
from infleet.engine.messages import FromCore, Shutdown, ToCore, decode_from_core, encode
from infleet.engine.server.core_loop import run_core_loop
from infleet.engine.server.core_proc import HEADER

log = logging.getLogger("infleet.engine")
OnMessage = Callable[[FromCore], None]
OnGone = Callable[[str], None]  # why it is gone


class ProcessCore:
    """The core in a child process, over a socket pair with length-prefixed msgpack."""

    def __init__(self, args: EngineArgs):
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    async def start(self, on_message: OnMessage, on_gone: OnGone) -> None:
        ours, theirs = socket.socketpair()
        with theirs:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "infleet.engine.server.core_proc", str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
            )
        # Our copy of their end is closed: when the child dies, reads here see EOF.
        reader, self._writer = await asyncio.open_unix_connection(sock=ours)
        self._writer.write(_frame(msgspec.msgpack.encode(self.args)))
        self._reader_task = asyncio.create_task(self._read(reader, on_message, on_gone))

    async def _read(
        self, reader: asyncio.StreamReader, on_message: OnMessage, on_gone: OnGone
    ) -> None:
        try:
            while True:
                (size,) = HEADER.unpack(await reader.readexactly(HEADER.size))
                on_message(decode_from_core(await reader.readexactly(size)))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except Exception:
            log.exception("reading from the engine core failed")
            self._kill()
        assert self.proc is not None
        code = await asyncio.to_thread(self.proc.wait)
        if not self._closing:
            on_gone(f"the engine core process exited with code {code}")

    def send(self, message: ToCore) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(_frame(encode(message)))

    async def close(self, timeout: float = 10.0, grace_s: float | None = None) -> None:
        """Ask the core to stop; kill it if it does not within `timeout` seconds."""
        self._closing = True
        self.send(Shutdown(grace_s))
        if self.proc is not None:
            try:
                await asyncio.wait_for(asyncio.to_thread(self.proc.wait), timeout)
            except TimeoutError:
                log.warning("engine core did not stop within %.0fs: killing it", timeout)
                self._kill()
                await asyncio.to_thread(self.proc.wait)
        if self._writer is not None:
            self._writer.close()
        if self._reader_task is not None:
            await asyncio.gather(self._reader_task, return_exceptions=True)

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()


class ThreadCore:
    """The core in a thread of this process (an existing EngineCore, model shared)."""

    def __init__(self, core: EngineCore):
        self.core = core
        self.pid = None
        self._inbox: queue.SimpleQueue[ToCore] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closing = False

    async def start(self, on_message: OnMessage, on_gone: OnGone) -> None:
        loop = asyncio.get_running_loop()

        def emit(message: FromCore) -> None:
            loop.call_soon_threadsafe(on_message, message)

        def run() -> None:
            try:
                run_core_loop(self.core, self._inbox, emit)
            except Exception:
                log.exception("the engine core thread failed")
            if not self._closing and not loop.is_closed():
                loop.call_soon_threadsafe(on_gone, "the engine core thread ended")

        self._thread = threading.Thread(target=run, name="infleet-engine-core", daemon=True)
        self._thread.start()

    def send(self, message: ToCore) -> None:
        self._inbox.put(message)

    async def close(self, timeout: float = 10.0, grace_s: float | None = None) -> None:
        self._closing = True
        self.send(Shutdown(grace_s))
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, timeout)


def _frame(payload: bytes) -> bytes:
    return HEADER.pack(len(payload)) + payload
