"""Overload and failure paths of a real server: 429 + Retry-After, disconnects free KV
blocks at once, and one failing request gets a 500 while the others are served."""

import json
import threading
import time

import httpx
import openai
import pytest

from infleet.engine.core.sampling_state import SamplingState
from tests.engine.serving import SMOLLM2, ServerThread, smollm2_engine

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server():
    with ServerThread(smollm2_engine(max_num_seqs=1, max_queue=1)) as s:
        yield s


def wait_for(condition, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def long_request(max_tokens=400):
    return {
        "model": SMOLLM2,
        "prompt": "Tell me a story.",
        "max_tokens": max_tokens,
        "ignore_eos": True,
        "stream": True,
    }


def test_full_queue_gets_429_and_disconnect_frees_blocks(server):
    engine = server.engine
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
    with httpx.stream(
        "POST", server.url + "/v1/completions", json=long_request(), timeout=60
    ) as running:
        lines = running.iter_lines()
        assert next(line for line in lines if line.startswith("data:"))  # first token: it runs
        assert engine.scheduler.num_running == 1 and engine.block_manager.usage > 0
        waiter = {}
        t = threading.Thread(
            target=lambda: waiter.update(
                r=client.completions.create(model=SMOLLM2, prompt="Hi", max_tokens=3)
            )
        )
        t.start()
        wait_for(lambda: engine.scheduler.num_waiting == 1)  # max_num_seqs=1: it queues
        full = httpx.post(
            server.url + "/v1/completions", json={"model": SMOLLM2, "prompt": "x"}, timeout=30
        )
        assert full.status_code == 429
        assert int(full.headers["Retry-After"]) >= 1
        assert full.json()["error"]["type"] == "rate_limit_error"
        with pytest.raises(openai.RateLimitError):
            client.completions.create(model=SMOLLM2, prompt="x", max_tokens=1)
    # The client hung up mid-stream: its request is aborted and its blocks freed, which
    # lets the queued request run.
    t.join(60)
    assert waiter["r"].usage.completion_tokens == 3
    wait_for(lambda: engine.block_manager.usage == 0.0 and not engine.requests)
    metrics = httpx.get(server.url + "/metrics").text
    assert 'infleet:kv_cache_usage_perc{model_name="smollm2-135m-instruct"} 0.0' in metrics
    assert (
        'infleet:request_success_total{finished_reason="abort",model_name="smollm2-135m-instruct"} 1.0'
        in metrics
    )


def test_one_failing_request_gets_500_and_the_engine_keeps_serving(server, caplog):
    engine = server.engine
    engine.args.max_num_seqs = 2
    engine.scheduler.config.max_num_seqs = 2
    # The persistent batch has a row per sequence the engine may run: two now (idle engine).
    engine.core.sampling = SamplingState(2, engine.vocab_size, engine.core.device)
    poison = 31337  # a token id whose forward we make fail (a fault in the model layer)
    model = engine.loaded.model
    real_forward = model.forward

    def faulty_forward(input_ids, positions):
        if (input_ids == poison).any():
            raise RuntimeError("injected fault")
        return real_forward(input_ids, positions)

    model.forward = faulty_forward
    try:
        results = {}

        def good():
            results["good"] = httpx.post(
                server.url + "/v1/completions",
                json={"model": SMOLLM2, "prompt": "Hello", "max_tokens": 40, "ignore_eos": True},
                timeout=60,
            )

        t = threading.Thread(target=good)
        t.start()
        wait_for(lambda: engine.scheduler.num_running == 1)
        bad = httpx.post(
            server.url + "/v1/completions",
            json={"model": SMOLLM2, "prompt": [1, poison, 2], "max_tokens": 4},
            timeout=60,
        )
        t.join(60)
        assert bad.status_code == 500
        assert (
            bad.json()["error"]["type"] == "server_error"
            and "forward failed" in bad.json()["error"]["message"]
        )
        assert results["good"].status_code == 200
        assert results["good"].json()["usage"]["completion_tokens"] == 40
        assert "retrying its 2 slices one by one" in caplog.text  # they shared a batch
        streamed = httpx.post(
            server.url + "/v1/completions",
            json={"model": SMOLLM2, "prompt": [poison], "max_tokens": 2, "stream": True},
            timeout=60,
        )
        events = [line[6:] for line in streamed.text.splitlines() if line.startswith("data: ")]
        assert json.loads(events[0])["error"]["code"] == "internal_error" and events[-1] == "[DONE]"
    finally:
        model.forward = real_forward
    ok = httpx.post(
        server.url + "/v1/completions",
        json={"model": SMOLLM2, "prompt": "Hi", "max_tokens": 2},
        timeout=60,
    )
    assert ok.status_code == 200 and engine.block_manager.usage == 0.0
