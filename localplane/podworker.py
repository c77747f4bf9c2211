"""One Pod on the process kubelet: its volumes, init containers in order, containers,
the status it publishes (phase, conditions, container states), and its termination."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infleet.localplane.container import ConfigError, prepare_volumes
from infleet.localplane.errors import ApiError
from infleet.localplane.events import record
from infleet.localplane.runner import ContainerRunner
from infleet.localplane.store import now_rfc3339

if TYPE_CHECKING:
    from infleet.localplane.kubelet import Kubelet

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
                root, token = self.root / "volumes", self.kubelet.token
                claims = self.kubelet.workdir / "claims"
                self.volumes = prepare_volumes(self.kubelet.api, self.pod(), root, token, claims)
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
