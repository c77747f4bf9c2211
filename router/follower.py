"""Follow each replica's published state (api/router_wire.py) into the replica set.

One task per replica reads its `/router/events` stream and folds each event in. A gap
in `seq`, a malformed event or a dropped stream ends the fold: the replica falls back to
the router's own approximate view and the follower reconnects (a new snapshot). An
engine that does not publish (404: an older engine, vLLM...) or does not accept this
router's key (401/403) is asked again rarely.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import aiohttp

from infleet.api import router_wire as wire
from infleet.router.replicas import ReplicaSet

log = logging.getLogger("infleet.router.follower")
RECONNECT_SECONDS = 1.0
UNPUBLISHED_RETRY_SECONDS = 30.0
SUPERVISE_SECONDS = 0.5


async def sse_messages(content: aiohttp.StreamReader) -> AsyncIterator[tuple[str, str]]:
    """(event type, data) for each server-sent event; data lines joined with newlines.

    Lines are split here rather than by the reader's readline, whose 128 KiB limit a
    snapshot of a large cache (16 hex digits a key) exceeds."""
    event_type, data, pending = "message", [], b""
    async for chunk in content.iter_any():
        *lines, pending = (pending + chunk).split(b"\n")
        for raw in lines:
            line = raw.decode().rstrip("\r")
            if not line:
                if data:
                    yield event_type, "\n".join(data)
                event_type, data = "message", []
            elif line.startswith("event:"):
                event_type = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))


async def follow(
    replicas: ReplicaSet, name: str, session: aiohttp.ClientSession, admin_key: str | None
) -> None:
    """Forever: fold `name`'s published events into `replicas`."""
    loop = asyncio.get_running_loop()
    headers = {"Authorization": f"Bearer {admin_key}"} if admin_key else {}
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=5)
    while name in replicas.replicas:
        wait = RECONNECT_SECONDS
        try:
            url = replicas.url(name) + wire.EVENTS_PATH
            async with session.get(url, headers=headers, timeout=timeout) as resp:
                if resp.status == 404:
                    wait = UNPUBLISHED_RETRY_SECONDS
                elif resp.status in (401, 403):
                    # The engine has keys and this router no admin key it accepts
                    # (INFLEET_ADMIN_API_KEY): route on the router's own view.
                    log.warning("replica %s: its feed refused this router's key (%d)",
                                name, resp.status)  # fmt: skip
                    wait = UNPUBLISHED_RETRY_SECONDS
                else:
                    resp.raise_for_status()
                    async for event_type, data in sse_messages(resp.content):
                        if not replicas.apply(
                            name, wire.parse_event(event_type, data), loop.time()
                        ):
                            log.info("replica %s: events out of order, resyncing", name)
                            break
        except (aiohttp.ClientError, wire.WireError, KeyError) as err:
            log.info("replica %s: event stream ended: %s", name, err)
        except Exception:  # a follower must outlive any one bad stream
            log.exception("replica %s: event stream failed", name)
        replicas.unpublished(name)
        await asyncio.sleep(wait)


async def follow_all(
    replicas: ReplicaSet, session: aiohttp.ClientSession, admin_key: str | None
) -> None:
    """Forever: one `follow` task per replica in the set, started and stopped with it."""
    tasks: dict[str, asyncio.Task[None]] = {}
    try:
        while True:
            for name in list(replicas.replicas):
                if name not in tasks or tasks[name].done():
                    tasks[name] = asyncio.create_task(follow(replicas, name, session, admin_key))
            for name in tasks.keys() - replicas.replicas.keys():
                tasks.pop(name).cancel()
            await asyncio.sleep(SUPERVISE_SECONDS)
    finally:
        for task in tasks.values():
            task.cancel()
        for task in tasks.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
