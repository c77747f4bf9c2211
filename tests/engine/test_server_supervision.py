"""The engine core's own process under supervision: a real `infleet serve`, its core killed
(in-flight requests get 500s, /health fails, the server exits non-zero), and the server
killed (its core does not outlive it)."""

import json
import os
import re
import signal
import threading
import time

import httpx
import pytest

from tests.engine.test_sigterm import start_server

pytestmark = pytest.mark.slow
BODY = {"model": "smollm2-135m-instruct", "prompt": "Count:", "max_tokens": 400, "ignore_eos": True}


def core_pid(log: list[str]) -> int:
    m = re.search(r"engine core in process (\d+)", "".join(log))
    assert m, "".join(log)
    return int(m.group(1))


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def wait_until(condition, timeout: float) -> float:
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, "timed out"
        time.sleep(0.05)
    return time.monotonic() - start


def test_core_death_fails_in_flight_requests_and_exits_non_zero():
    proc, url, log = start_server("--max-model-len", "1024")
    try:
        pid = core_pid(log)
        assert alive(pid) and pid != proc.pid
        plain = {}
        waiter = threading.Thread(
            target=lambda: plain.update(
                r=httpx.post(url + "/v1/completions", json=BODY, timeout=120)
            )
        )
        with httpx.stream(
            "POST", url + "/v1/completions", json={**BODY, "stream": True}, timeout=120
        ) as stream:
            events = stream.iter_lines()
            assert next(e for e in events if e.startswith("data:"))  # it runs
            waiter.start()
            time.sleep(0.5)
            os.kill(pid, signal.SIGKILL)

            def unhealthy() -> bool:
                try:
                    return httpx.get(url + "/health", timeout=5).status_code == 503
                except httpx.TransportError:
                    return True  # already gone

            assert wait_until(unhealthy, 10) < 10
            rest = [json.loads(e[6:]) for e in events if e.startswith("data: {")]
        assert rest[-1]["error"]["type"] == "server_error"
        assert "engine core process exited" in rest[-1]["error"]["message"]
        waiter.join(60)
        assert plain["r"].status_code == 500
        assert plain["r"].json()["error"]["code"] == "internal_error"
        assert proc.wait(timeout=30) == 1
        assert "engine core process exited with code -9" in "".join(log) + proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_killed_server_leaves_no_core_behind():
    proc, url, log = start_server()
    try:
        pid = core_pid(log)
        assert httpx.get(url + "/health").status_code == 200
        proc.kill()
        proc.wait()
        # The kernel kills the core with its parent (PR_SET_PDEATHSIG); end of input on
        # its socket would stop it too.
        wait_until(lambda: not alive(pid), 10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
