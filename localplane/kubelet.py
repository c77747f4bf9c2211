"""The process kubelet: runs the Pods bound to our nodes as local processes, each on
its own loopback address (127.1.x.y), publishes their status, serves `kubectl logs`."""

from __future__ import annotations

import asyncio
import ipaddress
from collections import deque
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from infleet.localplane.controller import Controller
from infleet.localplane.errors import ApiError
from infleet.localplane.podworker import PodWorker
from infleet.localplane.store import WatchEvent

Obj = dict[str, Any]


class Kubelet(Controller):
    manager = "kubelet"

    def __init__(
        self,
        api: Any,
        workdir: Path,
        api_url: str,
        backoff: float = 10.0,
        pod_network: str = "127.1.0.0/16",
        hollow: bool = False,
        token: str = "",
    ) -> None:
        super().__init__(api)
        self.token = token  # projected service account tokens (container.prepare_volumes)
        self.workdir, self.api_url, self.backoff = workdir, api_url, backoff
        # Hollow pods run no process: Running and Ready at once (scale tests of controllers).
        self.hollow = hollow
        self.pods = api.registry.get("", "v1", "pods")
        self.workers: dict[str, PodWorker] = {}
        self._free: deque[str] = deque()
        self._hosts = ipaddress.ip_network(pod_network).hosts()
        next(self._hosts)  # .1 is the "gateway" on real pod networks; keep it free
        self.session: aiohttp.ClientSession | None = None

    def _allocate_ip(self) -> str:
        if len(self._free) > 256:  # reuse addresses only long after they were freed
            return self._free.popleft()
        return str(next(self._hosts))

    def on_event(self, event: WatchEvent) -> None:
        if event.key == self.pods.key and (
            event.obj["spec"].get("nodeName") or event.type == "DELETED"
        ):
            meta = event.obj["metadata"]
            self.enqueue((meta["namespace"], meta["name"], meta["uid"]))

    async def reconcile(self, item: Any) -> None:
        ns, name, uid = item
        pod = self.api.store.peek(self.pods.key, ns, name)
        worker = self.workers.get(uid)
        if pod is None or pod["metadata"]["uid"] != uid:
            if worker is not None:
                worker.terminate(0)
                if worker.task is not None:
                    await worker.task
                self.workers.pop(uid, None)
                self._free.append(worker.ip)
            return
        node = self.api.store.peek(("", "nodes"), "", pod["spec"].get("nodeName", ""))
        if node is None:
            return
        if worker is None:
            if pod["metadata"].get("deletionTimestamp"):
                self.api.finish_delete(self.pods, pod)  # never started here: nothing to stop
                return
            if self.session is None:
                self.session = aiohttp.ClientSession()
            worker = PodWorker(self, pod, node, self._allocate_ip())
            self.workers[uid] = worker
            worker.task = asyncio.create_task(worker.run())
        if pod["metadata"].get("deletionTimestamp"):
            worker.terminate(float(pod["metadata"].get("deletionGracePeriodSeconds") or 0))

    async def shutdown(self, grace: float = 5.0) -> None:
        tasks = [w.task for w in self.workers.values() if w.task is not None]
        if self.hollow:  # no process to stop: just drop the workers
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            tasks = []
        for w in self.workers.values():
            w.terminate(grace)
        if tasks:
            await asyncio.wait(tasks, timeout=grace + 5)
        if self.session is not None:
            await self.session.close()

    # -- kubectl logs ------------------------------------------------------------
    async def logs(self, request: web.Request, rt: Any, ns: str, name: str) -> web.StreamResponse:
        pod = self.api.get(rt, ns, name)
        worker = self.workers.get(pod["metadata"]["uid"])
        names = [c["name"] for c in pod["spec"].get("containers") or []]
        cname = request.query.get("container") or (names[0] if len(names) == 1 else "")
        if not cname:
            raise ApiError(
                400,
                f"a container name must be specified for pod {name}, "
                f"choose one of: [{' '.join(names)}]",
            )
        runner = worker.runner(cname) if worker else None
        if runner is None or not runner.log_path(0).parent.exists():
            raise ApiError(400, f'container "{cname}" in pod "{name}" is waiting to start')
        n = (
            runner.restart_count - 1
            if request.query.get("previous") == "true"
            else runner.restart_count
        )
        path = runner.log_path(max(0, n))
        data = path.read_bytes() if path.exists() else b""
        tail = request.query.get("tailLines")
        if tail is not None:
            lines = data.splitlines(keepends=True)
            data = b"".join(lines[-int(tail) :]) if int(tail) else b""
        if request.query.get("follow") != "true":
            return web.Response(body=data, content_type="text/plain")
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await resp.prepare(request)
        await resp.write(data)
        offset = path.stat().st_size if path.exists() else 0
        while request.transport is not None and not request.transport.is_closing():
            exited = runner.proc is None or runner.proc.returncode is not None
            if path.exists() and path.stat().st_size > offset:
                with open(path, "rb") as f:
                    f.seek(offset)
                    chunk = f.read()
                offset += len(chunk)
                await resp.write(chunk)
            elif exited:
                break  # like kubectl logs -f: the stream ends with the container
            await asyncio.sleep(0.2)
        return resp
