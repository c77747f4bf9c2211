"""A container of a Pod as a local process: start, probes, restarts with back-off, and
graceful termination (preStop, SIGTERM to its process group, grace period, SIGKILL).

Termination messages: a process cannot be given a file at `terminationMessagePath`
(/dev/termination-log) here, so each run gets a fresh local file named by the env var
`INFLEET_TERMINATION_LOG` (the bundled engine writes its refusal there); after exit its
contents become `terminated.message`, as the kubelet does, with the log tail as the
fallback under FallbackToLogsOnError."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infleet.localplane.container import (
    ConfigError,
    build_env,
    command_line,
    mount_map,
    mounts_env,
    rewrite_paths,
)
from infleet.localplane.events import record
from infleet.localplane.images import image_paths
from infleet.localplane.probes import ProbeSpec, probe_once
from infleet.localplane.store import now_rfc3339

if TYPE_CHECKING:
    from infleet.localplane.podworker import PodWorker

Obj = dict[str, Any]
TERMINATION_LOG_ENV = "INFLEET_TERMINATION_LOG"
TERMINATION_MESSAGE_BYTES = 4096  # the kubelet's cap


def _die_with_parent() -> None:
    """Pod processes get SIGKILL if the control plane dies without stopping them."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class StartError(Exception):
    pass


class ContainerRunner:
    def __init__(self, worker: PodWorker, spec: Obj) -> None:
        self.w, self.spec, self.name = worker, spec, spec["name"]
        self.restart_count = 0
        self.ready = False
        self.started = False
        self.state: Obj = {"waiting": {"reason": "ContainerCreating"}}
        self.last_state: Obj = {}
        self.proc: asyncio.subprocess.Process | None = None
        self.stopping = False
        self.env: dict[str, str] = {}
        self.cwd = ""

    def status(self) -> Obj:
        out = {
            "name": self.name,
            "state": self.state,
            "lastState": self.last_state,
            "ready": self.ready,
            "restartCount": self.restart_count,
            "image": self.spec.get("image", ""),
            "imageID": "",
            "started": self.started,
        }
        if self.proc is not None:
            out["containerID"] = f"process://{self.proc.pid}"
        return out

    def log_path(self, restart: int | None = None) -> Path:
        n = self.restart_count if restart is None else restart
        return self.w.root / "logs" / self.name / f"{n}.log"

    async def _start(self) -> asyncio.subprocess.Process:
        pod = self.w.pod()
        mounts = mount_map(self.spec, self.w.volumes)
        mounts |= image_paths(self.spec.get("image", ""), self.w.kubelet.workdir)
        self.env = build_env(
            self.w.kubelet.api, pod, self.spec, self.w.node, self.w.kubelet.api_url
        )
        self.env = {k: rewrite_paths(v, mounts) for k, v in self.env.items()} | mounts_env(mounts)
        termination = self.termination_path()
        termination.parent.mkdir(parents=True, exist_ok=True)
        termination.write_bytes(b"")  # a message is this run's, never a previous one's
        self.env[TERMINATION_LOG_ENV] = str(termination)
        argv = command_line(self.spec, self.env, mounts)
        exe = argv[0] if "/" in argv[0] else shutil.which(argv[0], path=self.env["PATH"])
        if exe is None or not os.access(exe, os.X_OK):
            raise StartError(f'exec: "{argv[0]}": executable file not found in $PATH')
        wd = self.spec.get("workingDir")
        self.cwd = rewrite_paths(wd, mounts) if wd else str(self.w.root / "rootfs")
        Path(self.cwd).mkdir(parents=True, exist_ok=True)
        self.log_path().parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path(), "ab") as log:
            return await asyncio.create_subprocess_exec(
                exe,
                *argv[1:],
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    async def run_once(self, probes: bool) -> int:
        self.proc = await self._start()
        started_at = now_rfc3339()
        self.state, self.started = {"running": {"startedAt": started_at}}, True
        self.ready = (
            probes and "readinessProbe" not in self.spec and "startupProbe" not in self.spec
        )
        self.w.publish()
        record(
            self.w.kubelet.api,
            self.w.pod(),
            "Normal",
            "Started",
            f"Started container {self.name}",
            "kubelet",
        )
        probe_task = asyncio.create_task(self._probe_loop()) if probes else None
        code = await self.proc.wait()
        if probe_task is not None:
            probe_task.cancel()
        self.ready = False
        reason = "Completed" if code == 0 else "Error"
        self.state = {
            "terminated": {
                "exitCode": code if code >= 0 else 128 - code,
                "reason": reason,
                "startedAt": started_at,
                "finishedAt": now_rfc3339(),
            }
        }
        message = self._termination_message()
        if message:
            self.state["terminated"]["message"] = message
        elif code != 0 and self.spec.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            self.state["terminated"]["message"] = self._log_tail()
        self.w.publish()
        return code

    def termination_path(self) -> Path:
        return self.w.root / "termination" / self.name

    def _termination_message(self) -> str:
        path = self.termination_path()
        data = path.read_bytes()[:TERMINATION_MESSAGE_BYTES] if path.exists() else b""
        return data.decode(errors="replace")

    def _log_tail(self) -> str:
        """The kubelet's fallback termination message: the log's last 80 lines, 2 KiB."""
        path = self.log_path()
        data = path.read_bytes() if path.exists() else b""
        return b"".join(data.splitlines(keepends=True)[-80:])[-2048:].decode(errors="replace")

    async def loop(self, init: bool = False) -> int | None:
        """Run with the pod's restart policy; returns the final exit code (None if stopped)."""
        policy = self.w.spec["restartPolicy"]
        crashes = 0
        while not self.stopping:
            began = time.monotonic()
            try:
                code: int | None = await self.run_once(probes=not init)
            except (ConfigError, StartError) as err:
                code = None
                reason = (
                    "CreateContainerConfigError"
                    if isinstance(err, ConfigError)
                    else "RunContainerError"
                )
                self.state = {"waiting": {"reason": reason, "message": str(err)}}
                self.w.publish()
                record(self.w.kubelet.api, self.w.pod(), "Warning", "Failed", str(err), "kubelet")
            if self.stopping:
                return None
            if code == 0 and (init or policy != "Always"):
                return 0
            if policy == "Never":
                return code
            crashes = 0 if time.monotonic() - began > 600 else crashes + 1
            delay = 0.0 if crashes <= 1 else min(300.0, self.w.kubelet.backoff * 2 ** (crashes - 2))
            if code is not None:
                self.last_state, self.restart_count = self.state, self.restart_count + 1
            if delay and code is not None:  # start errors keep their own reason
                self.state = {
                    "waiting": {
                        "reason": "CrashLoopBackOff",
                        "message": f"back-off {delay:g}s restarting failed container={self.name} "
                        f"pod={self.w.name}",
                    }
                }
                self.w.publish()
            await asyncio.sleep(delay)
        return None

    async def _probe_loop(self) -> None:
        probes = {
            k: ProbeSpec.of(self.spec[k])
            for k in ("startupProbe", "livenessProbe", "readinessProbe")
            if k in self.spec
        }
        if "startupProbe" in probes and not await self._watch(probes["startupProbe"], "startup"):
            return
        tasks = [
            asyncio.create_task(self._watch(p, k.removesuffix("Probe")))
            for k, p in probes.items()
            if k != "startupProbe"
        ]
        if "readinessProbe" not in probes:
            self.ready = True
            self.w.publish()
        await asyncio.gather(*tasks)

    async def _watch(self, spec: ProbeSpec, kind: str) -> bool:
        await asyncio.sleep(spec.initial_delay)
        ok_run = bad_run = 0
        while True:
            ok, why = await probe_once(
                spec, self.w.ip, self.spec, self.env, self.cwd, self.w.kubelet.session
            )
            ok_run, bad_run = (ok_run + 1, 0) if ok else (0, bad_run + 1)
            if not ok:
                record(
                    self.w.kubelet.api,
                    self.w.pod(),
                    "Warning",
                    "Unhealthy",
                    f"{kind.capitalize()} probe failed: {why}",
                    "kubelet",
                )
            if kind == "startup" and ok_run >= spec.success_threshold:
                return True
            if (
                kind == "readiness"
                and (ok_run >= spec.success_threshold or bad_run >= spec.failure_threshold)
                and self.ready != ok
            ):
                self.ready = ok
                self.w.publish()
            if kind != "readiness" and bad_run >= spec.failure_threshold:
                record(
                    self.w.kubelet.api,
                    self.w.pod(),
                    "Normal",
                    "Killing",
                    f"Container {self.name} failed {kind} probe, will be restarted",
                    "kubelet",
                )
                await self.kill(self.w.grace_seconds())
                return False
            await asyncio.sleep(spec.period)

    async def kill(self, grace: float) -> None:
        """preStop, SIGTERM to the process group, then SIGKILL after `grace` seconds."""
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        deadline = time.monotonic() + grace
        hook = (self.spec.get("lifecycle") or {}).get("preStop")
        if hook:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._pre_stop(hook), max(0.0, grace))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # stragglers of the group

    async def _pre_stop(self, hook: Obj) -> None:
        if "sleep" in hook:
            await asyncio.sleep(float(hook["sleep"]["seconds"]))
        elif "exec" in hook:
            p = await asyncio.create_subprocess_exec(
                *hook["exec"]["command"], env=self.env, cwd=self.cwd or None
            )
            await p.wait()
        elif "httpGet" in hook:
            spec = ProbeSpec({"httpGet": hook["httpGet"]}, 0, 1, 30, 1, 1)
            await probe_once(spec, self.w.ip, self.spec, self.env, self.cwd, self.w.kubelet.session)

    async def stop(self, grace: float) -> None:
        self.stopping = True
        await self.kill(grace)
