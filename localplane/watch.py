"""Watch streams: initial state or replay from a resourceVersion, selector transitions,
bookmarks, `timeoutSeconds`, and 410 Gone as an in-stream ERROR event."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import ClientConnectionResetError, web

from infleet.localplane.errors import ApiError
from infleet.localplane.eventsv1 import to_view
from infleet.localplane.resources import ResourceType
from infleet.localplane.selectors import matches, parse_field_selector, parse_label_selector
from infleet.localplane.store import Store, WatchEvent
from infleet.localplane.tables import table


class WatchStream:
    def __init__(
        self,
        store: Store,
        rt: ResourceType,
        ns: str | None,
        query: Any,
        as_table: bool,
        bookmark_interval: float,
    ) -> None:
        self.store, self.rt, self.ns, self.query = store, rt, ns, query
        self.labels = parse_label_selector(query.get("labelSelector", ""))
        self.fields = parse_field_selector(query.get("fieldSelector", ""), rt.plural)
        self.as_table = as_table
        self.include = query.get("includeObject", "Metadata")
        self.bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
        self.bookmark_interval = bookmark_interval
        self.queue: asyncio.Queue[WatchEvent] = asyncio.Queue()

    def _listener(self, event: WatchEvent) -> None:
        if event.key == self.rt.key:
            self.queue.put_nowait(event)

    def _match(self, obj: dict[str, Any] | None) -> bool:
        if obj is None:
            return False
        if (
            self.ns is not None
            and self.rt.namespaced
            and obj["metadata"].get("namespace") != self.ns
        ):
            return False
        return matches(self.labels, obj["metadata"].get("labels")) and self.fields(obj)

    def _frame(self, etype: str, obj: dict[str, Any]) -> bytes:
        obj = {**obj, "apiVersion": self.rt.api_version}
        if self.as_table:
            obj = table(self.rt, [obj], obj["metadata"].get("resourceVersion", ""), self.include)
        return (json.dumps({"type": etype, "object": obj}) + "\n").encode()

    def _translate(self, ev: WatchEvent) -> bytes | None:
        obj, old = to_view(self.rt, ev.obj), ev.old and to_view(self.rt, ev.old)
        now, before = self._match(obj), self._match(old)
        if ev.type == "DELETED":
            return self._frame("DELETED", obj) if before or now else None
        if now and before:
            return self._frame("MODIFIED", obj)
        if now:
            return self._frame("ADDED", obj)
        if before:
            return self._frame("DELETED", obj)
        return None

    def _bookmark(self, initial_end: bool = False) -> bytes:
        meta: dict[str, Any] = {"resourceVersion": str(self.store.rv)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        obj = {"kind": self.rt.kind, "apiVersion": self.rt.api_version, "metadata": meta}
        return (json.dumps({"type": "BOOKMARK", "object": obj}) + "\n").encode()

    async def serve(self, request: web.Request) -> web.StreamResponse:
        self.store.subscribe(self._listener)
        try:
            return await self._serve(request)
        except (ConnectionResetError, ClientConnectionResetError):
            return web.Response(status=499)  # the client went away; nobody reads this
        finally:
            self.store.unsubscribe(self._listener)

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        rv = self.query.get("resourceVersion", "")
        send_initial = self.query.get("sendInitialEvents") == "true"
        frames: list[bytes] = []
        error: ApiError | None = None
        if send_initial or rv in ("", "0"):
            frames = [
                self._frame("ADDED", o)
                for o in (to_view(self.rt, x) for x in self.store.items(self.rt.key))
                if self._match(o)
            ]
        else:
            try:
                frames = [
                    f
                    for e in self.store.events_since(int(rv), self.rt.key)
                    if (f := self._translate(e)) is not None
                ]
            except ValueError:
                error = ApiError(400, f"invalid resource version: {rv!r}")
            except ApiError as err:
                error = err
        start_rv = self.store.rv
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        if error is not None:
            await resp.write(
                (json.dumps({"type": "ERROR", "object": error.status()}) + "\n").encode()
            )
            return resp
        for f in frames:
            await resp.write(f)
        if send_initial:
            await resp.write(self._bookmark(initial_end=True))
        timeout = float(self.query.get("timeoutSeconds") or 0) or None
        deadline = time.monotonic() + timeout if timeout else None
        next_bookmark = (
            time.monotonic() + self.bookmark_interval if self.bookmarks else float("inf")
        )
        while True:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            if request.transport is None or request.transport.is_closing():
                break
            wait = min(1.0, next_bookmark - now, (deadline - now) if deadline else 1.0)
            try:
                ev = await asyncio.wait_for(self.queue.get(), timeout=max(0.0, wait))
            except asyncio.TimeoutError:
                ev = None
            frame = self._translate(ev) if ev is not None and ev.rv > start_rv else None
            if frame is not None:
                await resp.write(frame)
            if self.bookmarks and time.monotonic() >= next_bookmark:
                await resp.write(self._bookmark())
                next_bookmark = time.monotonic() + self.bookmark_interval
        return resp
