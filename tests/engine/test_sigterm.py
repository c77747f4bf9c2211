"""SIGTERM on a real `infleet serve` (the default model): stop admitting, finish the
in-flight stream, exit 0."""

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def start_server(*flags: str) -> tuple[subprocess.Popen, str, list[str]]:
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "infleet"),
            "serve",
            "--port",
            "0",
            "--kv-cache-memory",
            "64MiB",
            *flags,
        ],
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
    )
    log = []
    assert proc.stderr is not None
    for line in proc.stderr:
        log.append(line)
        m = re.search(r"serving \S+ at (http://\S+)/v1", line)
        if m:
            return proc, m.group(1), log
    raise AssertionError("server exited before serving:\n" + "".join(log))


def test_sigterm_drains_in_flight_stream_then_exits_0():
    proc, url, log = start_server("--max-model-len", "1024", "--shutdown-grace-seconds", "60")
    try:
        startup = "".join(log)
        assert (
            "builtin:smollm2-135m-instruct" in startup
            and "KV cache:" in startup
            and "dtype float32" in startup
        )
        body = {
            "model": "smollm2-135m-instruct",
            "prompt": "Count:",
            "max_tokens": 12,  # few: each can take seconds on a loaded 2-core CI machine
            "ignore_eos": True,
            "stream": True,
        }
        with httpx.stream("POST", url + "/v1/completions", json=body, timeout=120) as stream:
            events = stream.iter_lines()
            first = next(e for e in events if e.startswith("data:"))
            proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 10
            while httpx.get(url + "/health").status_code != 503:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            refused = httpx.post(
                url + "/v1/completions", json={"model": "smollm2-135m-instruct", "prompt": "x"}
            )
            assert refused.status_code == 503 and refused.json()["error"]["code"] == "draining"
            rest = [e for e in events if e.startswith("data:")]
        chunks = [json.loads(e[6:]) for e in [first, *rest[:-1]]]
        assert rest[-1] == "data: [DONE]"
        assert chunks[-1]["choices"][0]["finish_reason"] == "length"
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
