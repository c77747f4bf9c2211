"""Real `infleet` processes for the router's tests: each picks a free port (--port 0) and
logs the URL it serves; `Launched` keeps the process so a test can SIGTERM it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO

INFLEET = str(Path(sys.executable).parent / "infleet")


@dataclass
class Launched:
    proc: subprocess.Popen[str]
    url: str
    log: list[str]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def launch(
    args: list[str],
    url_pattern: str,
    timeout_lines: int = 10_000,
    env: dict[str, str] | None = None,
) -> Launched:
    """Run `infleet ARGS` (with `env` added to ours) until its log matches `url_pattern`
    (one group: the URL)."""
    proc = subprocess.Popen(
        [INFLEET, *args],
        cwd=REPO,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert proc.stderr is not None
    log: list[str] = []
    for _, line in zip(range(timeout_lines), proc.stderr, strict=False):
        log.append(line)
        found = re.search(url_pattern, line)
        if found:
            # Keep draining its log so a full pipe never blocks it; keep the lines.
            def drain() -> None:
                assert proc.stderr is not None
                log.extend(proc.stderr)

            threading.Thread(target=drain, daemon=True).start()
            return Launched(proc, found.group(1), log)
    proc.kill()
    raise AssertionError(f"infleet {args[0]} exited before serving:\n" + "".join(log))


def serve_engine(model: Path, *extra: str) -> Launched:
    args = ["serve", "--model", str(model), "--port", "0", "--device", "cpu",
            "--kv-cache-memory", "16MiB", "--shutdown-grace-seconds", "10", *extra]  # fmt: skip
    return launch(args, r"serving \S+ at (http://\S+)/v1")


def run_router(*args: str, env: dict[str, str] | None = None) -> Launched:
    return launch(
        ["router", "--host", "127.0.0.1", "--port", "0", *args],
        r"routing \S+ at (http://\S+)/v1",
        env=env,
    )
