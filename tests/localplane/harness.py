"""A LocalPlane running in a background thread, driven from tests with real kubectl."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml

from infleet.localplane.plane import LocalPlane, PlaneConfig


class RunningPlane:
    def __init__(self, config: PlaneConfig) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="lp-test-")
        self.dir = Path(self._tmp.name)
        config.workdir = self.dir / "state"
        self.loop = asyncio.new_event_loop()
        self.plane = LocalPlane.__new__(LocalPlane)  # built inside the loop's thread
        ready = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(self.loop)

            async def boot() -> None:
                self.plane = LocalPlane(config)
                await self.plane.start()

            self.loop.run_until_complete(boot())
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()
        if not ready.wait(30):
            raise RuntimeError("local plane did not start")
        self.kubeconfig = self.plane.write_kubeconfig(self.dir / "kubeconfig")
        self.env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "KUBECACHEDIR": str(self.dir / "kubecache"),
        }
        # Raw HTTP for what kubectl cannot show (watch streams, status codes): the
        # kubeconfig's CA and token, as any client of the plane.
        credentials = self.plane.credentials
        self.http = httpx.Client(
            base_url=self.plane.url,
            verify=credentials.client_context(),
            headers={"Authorization": f"Bearer {credentials.token}"},
        )

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the plane's loop (the store is not thread-safe)."""

        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(30)

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            ["kubectl", *args],
            input=input,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{proc.stderr}")
        return proc

    def apply(self, manifest: str | dict[str, Any] | list[dict[str, Any]], *extra: str) -> str:
        if not isinstance(manifest, str):  # every string quoted: no YAML 1.1 `y` booleans
            docs = manifest if isinstance(manifest, list) else [manifest]
            manifest = yaml.safe_dump_all(docs, default_style='"')
        return self.kubectl("apply", "-f", "-", *extra, input=manifest).stdout

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 30, what: str = "") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")

    def stop(self) -> None:
        self.http.close()
        asyncio.run_coroutine_threadsafe(self.plane.stop(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self._tmp.cleanup()


def fast_config(**kw: Any) -> PlaneConfig:
    """Quick bookmarks and restarts so lifecycle tests finish in seconds, and loopback
    networks of its own so it never collides with another plane on this machine."""
    octet = random.randrange(16, 120) * 2
    return PlaneConfig(
        bookmark_interval=0.5,
        restart_backoff=0.5,
        pod_network=f"127.{octet}.0.0/16",
        service_network=f"127.{octet + 1}.0.0/16",
        **kw,
    )
