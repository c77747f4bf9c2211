"""Real servers for the metrics-source tests: a Prometheus (Debian's binary) on a free
port with its own config and storage, and `infleet serve` on a tiny random model."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import yaml

from tests.conftest import REPO

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = check()
            if value:
                return value
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@contextmanager
def prometheus(targets: list[tuple[str, dict[str, str]]]):
    """Prometheus scraping each (host:port, labels) every second; yields its URL."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {
                    "job_name": f"target{i}",
                    "static_configs": [{"targets": [address], "labels": labels}],
                }
                for i, (address, labels) in enumerate(targets)
            ],
        }
        path = Path(tmp) / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={path}",
                f"--storage.tsdb.path={Path(tmp) / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until(lambda: httpx.get(url + "/-/ready").status_code == 200, 60, "Prometheus")
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def scraped(url: str, query: str, want: int) -> bool:
    """True once `query` returns at least `want` series."""
    body = httpx.get(url + "/api/v1/query", params={"query": query}).json()
    return len(body["data"]["result"]) >= want


@contextmanager
def infleet_serve(model: Path):
    """`infleet serve` on `model` at a free port (the server picks it); yields its URL."""
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "infleet"),
            "serve",
            "--model",
            str(model),
            "--port",
            "0",
            "--device",
            "cpu",
            "--kv-cache-memory",
            "16MiB",
        ],
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
    )
    log: list[str] = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            log.append(line)
            found = re.search(r"serving \S+ at (http://\S+)/v1", line)
            if found:
                # Keep reading its log so a full pipe never blocks the server.
                threading.Thread(target=proc.stderr.read, daemon=True).start()
                yield found.group(1)
                return
        raise AssertionError("infleet serve exited before serving:\n" + "".join(log))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
