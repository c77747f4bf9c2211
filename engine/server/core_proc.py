"""The engine core's own process: `python -m infleet.engine.server.core_proc FD`.

`infleet serve` starts it (a fresh interpreter: nothing of the API process's threads or
locks is inherited) with one end of a socket pair as FD. Frames on the socket are a 4-byte
big-endian length and a msgpack message (engine/messages.py); the first frame from the
API side is the EngineArgs.

A reader thread turns incoming frames into the core loop's inbox, so the API side's
writes never wait for a step to end. The process never outlives the API process: end of
input (the API side closed its end, or died) shuts the loop down, and on Linux the kernel
sends it SIGKILL when its parent dies (PR_SET_PDEATHSIG), even mid-step. SIGINT and
SIGTERM are ignored: a Ctrl-C reaches the whole process group, and the API process decides
when the core stops (after draining).
"""

from __future__ import annotations

import ctypes
import logging
import os
import queue
import signal
import socket
import struct
import sys
import threading

import msgspec

from infleet.engine.args import EngineArgs
from infleet.engine.messages import FromCore, Shutdown, ToCore, decode_to_core, encode

HEADER = struct.Struct(">I")
_PR_SET_PDEATHSIG = 1
log = logging.getLogger("infleet.engine")


def recv_frame(sock: socket.socket) -> bytes | None:
    """One frame's payload, or None at end of input."""
    header = _recv_exactly(sock, HEADER.size)
    if header is None:
        return None
    (size,) = HEADER.unpack(header)
    return _recv_exactly(sock, size)


def _recv_exactly(sock: socket.socket, size: int) -> bytes | None:
    buf = bytearray(size)
    view, got = memoryview(buf), 0
    while got < size:
        n = sock.recv_into(view[got:])
        if n == 0:
            return None
        got += n
    return bytes(buf)


def send_frame(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(HEADER.pack(len(payload)) + payload)


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() == 1:  # the parent died before prctl took effect
            os._exit(1)


def _read_commands(sock: socket.socket, inbox: queue.SimpleQueue[ToCore]) -> None:
    try:
        while (frame := recv_frame(sock)) is not None:
            inbox.put(decode_to_core(frame))
    except (OSError, msgspec.DecodeError):
        log.exception("engine core: reading from the API process failed")
    inbox.put(Shutdown())  # end of input: the API process is gone or done


def main(argv: list[str]) -> int:
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s (core): %(message)s"
    )
    sock = socket.socket(fileno=int(argv[0]))
    first = recv_frame(sock)
    if first is None:
        return 1
    args = msgspec.msgpack.decode(first, type=EngineArgs)
    # Imported here so the process is up (and dies with its parent) before torch loads.
    from infleet.engine.core.engine_core import EngineCore
    from infleet.engine.core.logits_processors import register_constraint_factory
    from infleet.engine.model_config import ModelLoadError
    from infleet.engine.models.weight_count import count_weights
    from infleet.engine.quantization.apply import weights_line
    from infleet.engine.server.core_loop import run_core_loop
    from infleet.engine.structured.constraint import make_constraint
    from infleet.engine.termination import write_termination_message

    # Structured outputs: the core builds each request's grammar constraint through this
    # factory, in this process (a registration in the API process would not reach it).
    register_constraint_factory(make_constraint)
    try:
        core = EngineCore(args)
    except (ModelLoadError, ValueError) as err:
        # One line, also where the operator reads it: exit code 2 means "refused".
        line = f"infleet serve: {err}"
        print(line, file=sys.stderr)
        write_termination_message(line)
        return 2
    config = core.loaded.config
    log.info(
        "%s", count_weights(core.loaded.model, config.moe.top_k if config.moe else 0).describe()
    )
    log.info("%s", weights_line(core.loaded))
    inbox: queue.SimpleQueue[ToCore] = queue.SimpleQueue()
    threading.Thread(target=_read_commands, args=(sock, inbox), daemon=True).start()

    def emit(message: FromCore) -> None:
        send_frame(sock, encode(message))

    try:
        run_core_loop(core, inbox, emit)
    except (BrokenPipeError, ConnectionResetError):
        return 1  # the API process went away mid-send
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
