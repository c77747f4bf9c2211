"""Real `infleet operator` processes against a local plane, and what tests read from them:
their /metrics, the leader Lease, the plane's request log."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from infleet.api.crds import all_crds
from tests.conftest import REPO
from tests.localplane.harness import RunningPlane

LEASE = "infleet-operator"
# Short lease timings keep failover tests to seconds (the chart's defaults: 15 / 10 / 2).
FAST_LEASE = ("--lease-duration=4", "--renew-deadline=3", "--retry-period=1")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def install_crds(plane: RunningPlane) -> None:
    plane.apply(list(all_crds()))


class Operator:
    """`infleet operator` with its own identity (its requests carry it in User-Agent)."""

    def __init__(self, plane: RunningPlane, identity: str, *extra: str) -> None:
        self.identity, self.port = identity, free_port()
        self.log_path = plane.dir / f"{identity}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "infleet", "operator", "--all-namespaces",
             f"--identity={identity}", f"--metrics-port={self.port}", "--liveness-port=0",
             *FAST_LEASE, *extra],
            stdout=self.log_path.open("w"), stderr=subprocess.STDOUT, env=plane.env, cwd=REPO,
            start_new_session=True,
        )  # fmt: skip

    def metrics(self) -> dict[str, list[tuple[dict[str, str], float]]]:
        """{sample name: [(labels, value)]} from its /metrics."""
        url = f"http://127.0.0.1:{self.port}/metrics"
        text = urllib.request.urlopen(url, timeout=10).read().decode()
        out: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                out.setdefault(s.name, []).append((s.labels, s.value))
        return out

    def value(self, name: str, **labels: str) -> float:
        """The sum of a metric's samples matching `labels` (0 when none)."""
        samples = self.metrics().get(name, [])
        return sum(v for have, v in samples if labels.items() <= have.items())

    def up(self) -> bool:
        try:
            self.metrics()
        except OSError:
            return False
        return True

    def kill(self) -> None:
        """SIGKILL: no lease release, no goodbye, whatever it was doing."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self) -> str:
        return Path(self.log_path).read_text(errors="replace")[-3000:]


def lease_holder(plane: RunningPlane, namespace: str = "default", name: str = LEASE) -> str:
    found = plane.kubectl("get", "lease", name, "-n", namespace, "-o", "json", check=False)
    if found.returncode:
        return ""
    return json.loads(found.stdout)["spec"].get("holderIdentity") or ""


def wait_for(
    check: Callable[[], Any], timeout: float, what: str, op: Operator | None = None
) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    tail = f"\n{op.identity} log:\n{op.log_tail()}" if op else ""
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last: {last!r}){tail}")
