"""Run the HTTP server until SIGTERM/SIGINT, then drain and exit cleanly.

Draining is what rolling updates and spot notices rely on: /health turns 503 at once (the
endpoint leaves the Service), new requests get 503, requests already running finish
within `--shutdown-grace-seconds`, and only then does the process exit (status 0).

The engine core runs in its own child process (`ProcessCore`) unless an in-process
`EngineCore` is given (tests, single-process use: `ThreadCore`). If the core dies, the
requests in flight end with a 500, /health says 503, and `serve` returns 1 so that
`infleet serve` exits non-zero and the kubelet restarts the pod.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

from aiohttp import web

from infleet.engine.adapters import hooks as adapter_hooks
from infleet.engine.args import EngineArgs
from infleet.engine.core.engine_core import EngineCore
from infleet.engine.loader import load_tokenizer
from infleet.engine.messages import CoreReady
from infleet.engine.server.app import ServerSettings, ServerState, build_app
from infleet.engine.server.auth import Keys
from infleet.engine.server.core_client import CoreClient, CoreGone
from infleet.engine.server.core_transport import ProcessCore, ThreadCore
from infleet.engine.server.generation_config import read_generation_defaults
from infleet.engine.server.prepare import ServedModel
from infleet.lora.errors import AdapterError

log = logging.getLogger("infleet.engine.server")
EXIT_CORE_GONE = 1
EXIT_START_FAILED = 2
_GONE_GRACE_SECONDS = 5.0  # for handlers to write the 500s of failed requests


def url_of(runner: web.AppRunner) -> str:
    host, port = runner.addresses[0][:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _log_ready(args: EngineArgs, ready: CoreReady, pid: int | None) -> None:
    where = f"process {pid}" if pid is not None else "this process"
    log.info(
        "engine core in %s: model %s (served as %r) on %s, dtype %s, attention %s",
        where,
        args.model,
        ready.model_name,
        ready.device,
        ready.dtype,
        ready.attention_backend,
    )
    log.info(
        "KV cache: %d blocks of %d tokens (%.0f MiB, %d tokens); max model len %d",
        ready.num_blocks,
        ready.block_size,
        ready.num_blocks * ready.kv_bytes_per_block / 2**20,
        ready.num_blocks * ready.block_size,
        ready.max_model_len,
    )


async def serve(
    args: EngineArgs,
    *,
    core: EngineCore | None = None,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> int:
    """Serve until `stop` is set (by SIGTERM/SIGINT when not given), then drain.

    Returns the process exit status: 0 after a drain, 1 when the core died, 2 when it
    could not start."""
    loop = asyncio.get_running_loop()
    keys = Keys.from_flags(
        args.api_key, args.api_keys_file, args.admin_api_key, args.metrics_require_key
    )
    if stop is None:
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    tokenizer = core.loaded.tokenizer if core is not None else load_tokenizer(args.model)
    transport = ThreadCore(core) if core is not None else ProcessCore(args)
    client = CoreClient(transport, tokenizer, args.max_queue)
    try:
        ready = await client.start()
    except CoreGone as err:
        log.error("the engine core did not start: %s", err)
        await client.close()
        return EXIT_START_FAILED
    _log_ready(args, ready, transport.pid)
    model = ServedModel(
        ready.model_name,
        args.model,
        ready.max_model_len,
        ready.vocab_size,
        tokenizer,
        read_generation_defaults(args.model, args.generation_config),
        num_blocks=ready.num_blocks,
        block_size=ready.block_size,
        max_num_seqs=args.max_num_seqs,
    )
    settings = ServerSettings(args.max_request_body_size, not args.disable_log_requests)
    state = ServerState()
    app = build_app(client, model, settings, state, keys)
    try:
        adapter_hooks.install_if_enabled(app, args, ready, client.transport.send)
    except AdapterError as err:
        log.error("%s", err.message)
        await client.close()
        return EXIT_START_FAILED
    # handler_cancellation: a client that hangs up cancels its handler, which aborts its
    # request and frees its KV blocks right away.
    runner = web.AppRunner(
        app,
        handler_cancellation=True,
        access_log=None,
        shutdown_timeout=1.0,
    )
    await runner.setup()
    await web.TCPSite(runner, args.host, args.port).start()
    url = url_of(runner)
    log.info("serving %s at %s/v1", ready.model_name, url)
    if on_ready is not None:
        on_ready(url)
    stopped = asyncio.ensure_future(stop.wait())
    gone = asyncio.ensure_future(client.gone.wait())
    await asyncio.wait([stopped, gone], return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    gone.cancel()

    state.draining = True
    core_gone = client.gone.is_set()
    if core_gone:
        log.error("stopping: %s", client.gone_reason)
        grace = _GONE_GRACE_SECONDS
    else:
        grace = args.shutdown_grace_seconds
        log.info("draining: %d requests in flight, waiting up to %.0fs", state.in_flight, grace)
    deadline = loop.time() + grace
    while state.in_flight and loop.time() < deadline:
        await asyncio.sleep(0.05)
    if state.in_flight:
        log.warning("grace period over: aborting %d requests", state.in_flight)
    await runner.cleanup()
    # The rest of the grace period is the core's: it writes queued KV blocks to NVMe.
    await client.close(grace_s=max(0.0, deadline - loop.time()))
    log.info("stopped")
    return EXIT_CORE_GONE if client.gone.is_set() else 0
