"""The emulated control plane in a child process of its own, counting API requests.

A process of its own so the driver's client work does not share its interpreter lock
with the API server; the counts (by client, verb and resource) show what each
reconcile costs the API server.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
from collections import Counter
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from aiohttp import web

from infleet.localplane.plane import LocalPlane, PlaneConfig


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (/proc/PID/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def request_key(request: web.Request) -> str:
    """'<client> <verb> <resource>[/<subresource>]', e.g. 'operator patch deployments'
    (the middleware adds the status code of a refused request)."""
    agent = request.headers.get("User-Agent", "")
    # The operator's clients (kopf's and its own) both name themselves infleet-operator/.
    who = "operator" if agent.startswith("infleet-operator/") else agent.split("/")[0] or "other"
    parts = request.path.strip("/").split("/")
    rest = parts[2:] if parts[0] == "api" else parts[3:]
    if len(rest) >= 3 and rest[0] == "namespaces":
        rest = rest[2:]
    if not rest:
        return f"{who} discovery"
    verb = request.method.lower()
    if verb == "get":
        watching = request.query.get("watch") in ("1", "true")
        verb = "watch" if watching else ("get" if len(rest) > 1 else "list")
    return f"{who} {verb} {'/'.join([rest[0], *rest[2:3]])}"


def _serve(config: PlaneConfig, kubeconfig: str, conn: Connection) -> None:
    asyncio.run(_main(config, Path(kubeconfig), conn))


async def _main(config: PlaneConfig, kubeconfig: Path, conn: Connection) -> None:
    from infleet.localplane.up import install_crds

    plane = LocalPlane(config)
    counts: Counter[str] = Counter()

    @web.middleware
    async def count(request: web.Request, handler: Any) -> web.StreamResponse:
        response = await handler(request)
        refused = f" {response.status}" if response.status >= 400 else ""
        counts[request_key(request) + refused] += 1
        return response

    # Outermost (before start(): the app is not frozen yet), so it sees refused requests
    # as the error middleware answers them.
    plane.server.app.middlewares.insert(0, count)
    await plane.start()
    install_crds(plane)
    plane.write_kubeconfig(kubeconfig)
    conn.send(plane.url)
    loop = asyncio.get_running_loop()
    try:
        while True:
            try:
                message = await loop.run_in_executor(None, conn.recv)
            except EOFError:  # the driver is gone
                break
            if message == "counts":
                conn.send(dict(counts))
            elif message == "stop":
                break
    finally:
        await plane.stop()
        conn.close()


class PlaneProcess:
    def __init__(self, config: PlaneConfig, kubeconfig: Path) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self.process = ctx.Process(
            target=_serve, args=(config, str(kubeconfig), child), name="localplane"
        )
        self.process.start()
        child.close()
        if not self._conn.poll(60):
            self.process.kill()
            raise RuntimeError("the local control plane did not start in 60 s")
        self.url: str = self._conn.recv()
        self.kubeconfig = kubeconfig

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def request_counts(self) -> Counter[str]:
        self._conn.send("counts")
        return Counter(self._conn.recv())

    def stop(self) -> None:
        with contextlib.suppress(OSError):  # the plane may be gone already
            self._conn.send("stop")
        self.process.join(30)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
