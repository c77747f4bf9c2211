"""The process kubelet: runs the Pods bound to our nodes as local processes, each on
its own loopback address (127.1.x.y), publishes their status, serves `kubectl logs`."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections import deque
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from infleet.localplane.container import ConfigError, prepare_volumes
from infleet.localplane.controller import Controller
from infleet.localplane.errors import ApiError
from infleet.localplane.events import record
from infleet.localplane.runner import ContainerRunner
from infleet.localplane.store import WatchEvent, now_rfc3339

Obj = dict[str, Any]


class PodWorker:
    def __init__(self, kubelet: Kubelet, pod: Obj, node: Obj, ip: str) -> None:
        self.kubelet, self.node, self.ip = kubelet, node, ip
        meta = pod["metadata"]
        self.ns, self.name, self.uid = meta["namespace"], meta["name"], meta["uid"]
        self.spec = pod["spec"]
        self.root = kubelet.workdir / "pods" / f"{self.ns}_{self.name}_{self.uid[:8]}"
        self.volumes: dict[str, Path] = {}
        self.inits = [ContainerRunner(self, c) for c in self.spec.get("initContainers") or []]
        self.containers = [ContainerRunner(self, c) for c in self.spec.get("containers") or []]
        self.initialized = not self.inits
        self.failed_init = False
        self.started_at = now_rfc3339()
        self.stop_event = asyncio.Event()
        self.grace: float = float(self.spec.get("terminationGracePeriodSeconds", 30))
        self._transitions: dict[str, tuple[str, str]] = {}
        self._dirty = False
        self.task: asyncio.Task[None] | None = None

    def pod(self) -> Obj:
        return self.kubelet.api.store.peek(("", "pods"), self.ns, self.name) or {
            "metadata": {"name": self.name, "namespace": self.ns, "uid": self.uid},
            "spec": self.spec,
        }

    def grace_seconds(self) -> float:
        return self.grace

    def runner(self, name: str) -> ContainerRunner | None:
        return next((c for c in self.inits + self.containers if c.name == name), None)

    async def run(self) -> None:
        await self._write_status()  # podIP first: env (POD_IP) and probes read it
        if self.kubelet.hollow:
            await self._run_hollow()
            return
        while not self.stop_event.is_set():
            try:
                self.volumes = prepare_volumes(self.kubelet.api, self.pod(), self.root / "volumes")
                break
            except ConfigError as err:
                record(self.kubelet.api, self.pod(), "Warning", "FailedMount", str(err), "kubelet")
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.stop_event.wait(), 2.0)
        for init in self.inits:
            if self.stop_event.is_set():
                break
            code = await _until_stopped(init.loop(init=True), self.stop_event)
            if code not in (0, None) or (code is None and not self.stop_event.is_set()):
                self.failed_init = True
                self.publish()
                break
        else:
            self.initialized = True
            self.publish()
            if not self.stop_event.is_set():
                loops = [asyncio.create_task(c.loop()) for c in self.containers]
                await self.stop_event.wait()
                await asyncio.gather(*(c.stop(self.grace) for c in self.containers))
                for t in loops:
                    t.cancel()
        await self.stop_event.wait()
        await asyncio.gather(*(c.stop(self.grace) for c in self.inits + self.containers))
        await self._write_status()
        pod = self.kubelet.api.store.peek(("", "pods"), self.ns, self.name)
        if pod is not None and pod["metadata"]["uid"] == self.uid:
            self.kubelet.api.finish_delete(self.kubelet.pods, pod)

    async def _run_hollow(self) -> None:
        for c in self.containers:
            c.state, c.started, c.ready = {"running": {"startedAt": now_rfc3339()}}, True, True
        self.initialized = True
        await self._write_status()
        await self.stop_event.wait()
        for c in self.containers:
            c.ready = False
            c.state = {
                "terminated": {"exitCode": 0, "reason": "Completed", "finishedAt": now_rfc3339()}
            }
        await self._write_status()
        pod = self.kubelet.api.store.peek(("", "pods"), self.ns, self.name)
        if pod is not None and pod["metadata"]["uid"] == self.uid:
            self.kubelet.api.finish_delete(self.kubelet.pods, pod)

    def terminate(self, grace: float) -> None:
        self.grace = min(self.grace, grace)
        self.stop_event.set()

    # -- status ----------------------------------------------------------------
    def publish(self) -> None:
        if not self._dirty:
            self._dirty = True
            asyncio.get_running_loop().call_soon(
                lambda: asyncio.ensure_future(self._write_status())
            )

    def _cond(self, ctype: str, ok: bool) -> Obj:
        status = "True" if ok else "False"
        if self._transitions.get(ctype, ("", ""))[0] != status:
            self._transitions[ctype] = (status, now_rfc3339())
        return {"type": ctype, "status": status, "lastTransitionTime": self._transitions[ctype][1]}

    def _phase(self) -> str:
        if self.failed_init:
            return "Failed"
        states = [c.state for c in self.containers]
        if not self.initialized or not any(c.started for c in self.containers):
            return "Pending"
        if all("terminated" in s for s in states) and (
            self.spec["restartPolicy"] == "Never"
            or self.stop_event.is_set()
            or (
                self.spec["restartPolicy"] == "OnFailure"
                and all(s["terminated"]["exitCode"] == 0 for s in states)
            )
        ):
            return (
                "Succeeded" if all(s["terminated"]["exitCode"] == 0 for s in states) else "Failed"
            )
        return "Running"

    async def _write_status(self) -> None:
        self._dirty = False
        api = self.kubelet.api
        pod = api.store.get(("", "pods"), self.ns, self.name)
        if pod is None or pod["metadata"]["uid"] != self.uid:
            return
        ready = bool(self.containers) and all(c.ready for c in self.containers)
        kept = [
            c
            for c in pod.get("status", {}).get("conditions") or []
            if c["type"] in ("PodScheduled", "DisruptionTarget")
        ]
        node_ip = self.node["status"]["addresses"][0]["address"]
        status = {
            **pod.get("status", {}),
            "phase": self._phase(),
            "hostIP": node_ip,
            "hostIPs": [{"ip": node_ip}],
            "podIP": self.ip,
            "podIPs": [{"ip": self.ip}],
            "startTime": self.started_at,
            "conditions": [
                *kept,
                self._cond("PodReadyToStartContainers", True),
                self._cond("Initialized", self.initialized),
                self._cond("ContainersReady", ready),
                self._cond("Ready", ready),
            ],
            "containerStatuses": [c.status() for c in self.containers],
        }
        if self.inits:
            status["initContainerStatuses"] = [c.status() for c in self.inits]
        if pod.get("status") != status:
            pod["status"] = status
            with contextlib.suppress(ApiError):
                api.update(
                    self.kubelet.pods, self.ns, self.name, pod, "kubelet", subresource="status"
                )


async def _until_stopped(coro: Any, stop: asyncio.Event) -> Any:
    task, waiter = asyncio.ensure_future(coro), asyncio.ensure_future(stop.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if task.done():
        return task.result()
    return None


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
    ) -> None:
        super().__init__(api)
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
