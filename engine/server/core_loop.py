"""The engine core's busy loop: commands in, one `CoreOutputs` out per step.

It runs wherever the core lives: the main thread of the core's own process (`core_proc`),
or a thread of the API process (tests and single-process use). The transport is two
callables: `inbox` yields the API side's messages, `emit` sends one message back. All of a
step's deltas travel in one message, so the per-message cost is paid once per step, not
once per token.

When nothing runs, the loop blocks on the inbox (no busy-spin); while requests run it
takes whatever commands have arrived between steps.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable

from infleet.engine.core.engine_core import EngineCore
from infleet.engine.messages import (
    Abort,
    CompletionDelta,
    CoreOutputs,
    CoreRequest,
    CoreStats,
    FromCore,
    Shutdown,
    ToCore,
    UnloadAdapter,
)

log = logging.getLogger("infleet.engine")


def run_core_loop(
    core: EngineCore, inbox: queue.SimpleQueue[ToCore], emit: Callable[[FromCore], None]
) -> None:
    """Serve until a Shutdown arrives (the API side's, or the transport's at end of input)."""
    emit(core.ready())
    last_stats: CoreStats | None = None
    received = 0  # CoreRequests taken in, reported in every CoreStats
    while True:
        commands = [inbox.get()] if not core.has_unfinished() else []
        while True:
            try:
                commands.append(inbox.get_nowait())
            except queue.Empty:
                break
        rejected: list[CompletionDelta] = []
        for cmd in commands:
            if isinstance(cmd, Shutdown):
                core.shutdown(cmd.grace_s)
                return
            if isinstance(cmd, Abort):
                core.abort(cmd.request_ids, index=cmd.index)
            elif isinstance(cmd, CoreRequest):
                received += 1
                rejected += _add(core, cmd)
            elif isinstance(cmd, UnloadAdapter):
                core.unload_adapter(cmd.id)
        if core.has_unfinished():
            try:
                out = core.step()
            except Exception:
                # A bug, not a request's fault: end what is in flight, keep serving.
                log.exception("engine step failed; failing its in-flight requests")
                out = core.fail_all("the engine step failed")
            out.deltas[:0] = rejected
        else:
            out = CoreOutputs(rejected, core.stats())  # aborts may have freed blocks
        out.stats.requests_received_total = received
        if not out.deltas and out.stats == last_stats:
            continue  # idle, and nothing changed since the last message
        last_stats = out.stats
        emit(out)


def _add(core: EngineCore, request: CoreRequest) -> list[CompletionDelta]:
    """Admit a request; one that fails ends at once with an error per choice (the API side
    checked the limits it knows, so this is a limit only the core knows, or a bug)."""
    try:
        core.add_request(request)
        return []
    except Exception as err:
        log.warning("could not add request %s: %s", request.request_id, err)
        n = len(request.prompt_token_ids)
        return [
            CompletionDelta(request.request_id, i, [], None, "error", None, n, 0, error=str(err))
            for i in range(request.params.n)
        ]
