"""A tensor- or pipeline-parallel replica under supervision: a real `infleet serve
--tensor-parallel-size 2` (or `--pipeline-parallel-size 2`), answering through the `openai` SDK; its rank 1 killed mid-request: the in-flight
stream ends with an error, /health fails, the server exits non-zero and no rank is left."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import REPO
from tests.engine.test_server_supervision import alive, core_pid, wait_until
from tests.engine.test_sigterm import start_server
from tests.engine.tiny_models import build_checkpoint

pytestmark = pytest.mark.slow


def children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(c) for c in f.read().split()]


@pytest.mark.parametrize("degree", ["--tensor-parallel-size", "--pipeline-parallel-size"])
def test_a_killed_rank_fails_the_request_and_takes_the_replica_down(tmp_path, degree):
    """Rank 1 is the other tensor-parallel shard, or the second pipeline stage."""
    # Long contexts, so the request below is still decoding when the rank dies.
    path = build_checkpoint(tmp_path, "llama", max_position_embeddings=4096)
    proc, url, log = start_server(
        "--model", str(path), "--device", "cpu", degree, "2", "--max-model-len", "4096",
    )  # fmt: skip
    try:
        core = core_pid(log)
        (rank1,) = children(core)  # rank 0 is the core; it spawned rank 1
        client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)
        # Answers through the SDK with both ranks up.
        done = client.completions.create(model=path.name, prompt="The quick", max_tokens=4)
        assert done.usage.completion_tokens == 4
        stream = client.completions.create(
            model=path.name, prompt="The quick brown fox", max_tokens=4000, stream=True,
            extra_body={"ignore_eos": True},
        )  # fmt: skip
        assert next(iter(stream)).choices[0].text is not None  # it runs
        os.kill(rank1, signal.SIGKILL)
        with pytest.raises(openai.APIError):  # the rest of the stream is an error event
            for _ in stream:
                pass

        def unhealthy() -> bool:
            try:
                return httpx.get(url + "/health", timeout=5).status_code == 503
            except httpx.TransportError:
                return True  # already gone

        wait_until(unhealthy, 20)
        assert proc.wait(timeout=60) == 1
        out = "".join(log) + proc.stderr.read()
        assert "rank 1 exited with -9" in out
        wait_until(lambda: not alive(core) and not alive(rank1), 10)  # no orphans
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_two_nodes_serve_one_tensor_parallel_replica(tmp_path):
    """Two `infleet serve` processes as two nodes of one replica (what a LeaderWorkerSet
    group runs: the leader serves, the worker joins with --node-rank 1); stopping the
    leader ends the worker cleanly."""
    import socket
    import subprocess
    import sys

    path = build_checkpoint(tmp_path, "llama")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    group = ["--model", str(path), "--device", "cpu", "--tensor-parallel-size", "2",
             "--nnodes", "2", "--master-addr", "127.0.0.1", "--master-port", str(port)]  # fmt: skip
    infleet = str(Path(sys.executable).parent / "infleet")
    worker = subprocess.Popen([infleet, "serve", *group, "--node-rank", "1"], cwd=REPO)
    proc = None
    try:
        proc, url, log = start_server(*group, "--node-rank", "0")
        assert children(core_pid(log)) == []  # its node has one rank: rank 1 is the worker's
        client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)
        done = client.completions.create(
            model=path.name, prompt="The quick brown fox", max_tokens=8, temperature=0
        )
        assert done.usage.completion_tokens == 8 and done.choices[0].text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert worker.wait(timeout=60) == 0
    finally:
        for p in (proc, worker):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()


@pytest.mark.parametrize(
    ("flag", "line"),
    [
        (
            "--tensor-parallel-size",
            "infleet serve: --tensor-parallel-size 3 does not divide the model's 4 attention "
            "heads, 2 KV heads (need a multiple or a divisor of the degree), intermediate_size 128",
        ),
        (
            "--pipeline-parallel-size",
            "infleet serve: --pipeline-parallel-size 3 does not divide the model's 2 layers",
        ),
    ],
    ids=["tp", "pp"],
)
def test_degrees_the_model_cannot_take_are_refused_at_start_up(tmp_path, flag, line):
    """Before any rank starts: exit 2, the numbers on stderr and in the termination log."""
    import subprocess
    import sys

    path = build_checkpoint(tmp_path / "model", "llama")  # 4 heads, 2 KV heads
    log = tmp_path / "termination-log"
    done = subprocess.run(
        [sys.executable, "-m", "infleet", "serve", "--model", str(path), "--device", "cpu",
         flag, "3", "--port", "0"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "INFLEET_TERMINATION_LOG": str(log)},
    )  # fmt: skip
    assert done.returncode == 2
    assert log.read_text() == line
    assert line in done.stderr
