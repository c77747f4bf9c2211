"""The OpenAI API of a real server on SmolLM2, through the openai SDK and raw HTTP."""

import json

import httpx
import openai
import pytest

from tests.engine.serving import SMOLLM2, ServerThread, smollm2_args

pytestmark = pytest.mark.slow
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def server():
    with ServerThread(args=smollm2_args(max_model_len=2048)) as s:  # the core in its own process
        yield s


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def post(server, path, body, **kw):
    content = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return httpx.post(
        server.url + path,
        content=content,
        headers={"content-type": "application/json"},
        timeout=60,
        **kw,
    )


def test_chat_answers_paris(client):
    r = client.chat.completions.create(
        model=SMOLLM2, messages=QUESTION, temperature=0, max_tokens=24
    )
    assert "Paris" in r.choices[0].message.content
    assert r.choices[0].finish_reason == "stop" and r.choices[0].message.role == "assistant"
    assert (
        r.usage.prompt_tokens > 10
        and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    )


def test_chat_streams_paris_with_final_usage_chunk(client):
    stream = client.chat.completions.create(
        model=SMOLLM2,
        messages=QUESTION,
        temperature=0,
        max_tokens=24,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Paris" in text
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    last = chunks[-1]
    assert last.choices == [] and last.usage.completion_tokens > 0
    # The same prompt again: its prefix blocks come from the cache.
    assert last.usage.prompt_tokens_details.cached_tokens >= 16
    plain = client.chat.completions.create(
        model=SMOLLM2, messages=QUESTION, temperature=0, max_tokens=24
    )
    assert plain.choices[0].message.content == text


def test_completion_logprobs_n_and_stop_string(client):
    r = client.completions.create(
        model=SMOLLM2,
        prompt="The capital of France is",
        max_tokens=6,
        temperature=0,
        logprobs=3,
        n=2,
    )
    assert len(r.choices) == 2 and r.choices[0].text == r.choices[1].text
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 6
    assert "".join(lp.tokens) == r.choices[0].text and lp.text_offset[0] == 0
    assert all(len(top) == 3 for top in lp.top_logprobs)
    assert (
        lp.tokens[0] in lp.top_logprobs[0]
        and max(lp.top_logprobs[0].values()) == lp.token_logprobs[0]
    )
    assert r.usage.completion_tokens == 12
    full = r.choices[0].text
    stop = full.strip()[2:5]  # a stop string inside the greedy continuation
    cut = client.completions.create(
        model=SMOLLM2, prompt="The capital of France is", max_tokens=6, temperature=0, stop=[stop]
    )
    assert cut.choices[0].finish_reason == "stop" and stop not in cut.choices[0].text
    assert full.startswith(cut.choices[0].text)
    streamed = client.completions.create(
        model=SMOLLM2,
        prompt="The capital of France is",
        max_tokens=6,
        temperature=0,
        stop=[stop],
        stream=True,
    )
    assert "".join(c.choices[0].text for c in streamed) == cut.choices[0].text


def test_chat_logprobs_shape(client):
    r = client.chat.completions.create(
        model=SMOLLM2, messages=QUESTION, max_tokens=3, temperature=0, logprobs=True, top_logprobs=2
    )
    content = r.choices[0].logprobs.content
    assert len(content) == 3 and all(len(c.top_logprobs) == 2 for c in content)
    assert content[0].token == content[0].top_logprobs[0].token and content[0].bytes == list(
        content[0].token.encode()
    )


def test_seeded_sampling_is_reproducible(client):
    kw = dict(model=SMOLLM2, prompt="Once upon a time", max_tokens=12, temperature=1.0, seed=7)
    a, b = client.completions.create(**kw), client.completions.create(**kw)
    assert a.choices[0].text == b.choices[0].text


def test_models_and_health(server, client):
    assert [m.id for m in client.models.list().data] == [SMOLLM2]
    assert httpx.get(server.url + "/health").status_code == 200


def error_of(resp, status):
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    return err


def test_bad_inputs_get_openai_errors(server, client):
    assert error_of(post(server, "/v1/chat/completions", b"{not json"), 400)["param"] is None
    assert error_of(post(server, "/v1/completions", [1, 2]), 400)["message"]
    err = error_of(
        post(server, "/v1/completions", {"model": SMOLLM2, "prompt": "x", "max_tokens": "ten"}), 400
    )
    assert err["param"] == "max_tokens"
    err = error_of(
        post(server, "/v1/completions", {"model": SMOLLM2, "prompt": "x", "temperature": 7}), 400
    )
    assert err["param"] == "temperature"
    err = error_of(
        post(
            server,
            "/v1/chat/completions",
            {"model": SMOLLM2, "messages": [{"role": "user", "content": 3}]},
        ),
        400,
    )
    assert err["param"] == "messages.0.content"
    err = error_of(post(server, "/v1/chat/completions", {"model": SMOLLM2}), 400)
    assert err["param"] == "messages"
    err = error_of(post(server, "/v1/completions", {"model": SMOLLM2, "prompt": {"a": 1}}), 400)
    assert err["param"] == "prompt"
    err = error_of(
        post(
            server,
            "/v1/completions",
            {"model": SMOLLM2, "prompt": "x", "echo": True, "logprobs": 1},
        ),
        400,
    )
    assert err["param"] == "echo"
    err = error_of(
        post(
            server,
            "/v1/chat/completions",
            {"model": SMOLLM2, "messages": QUESTION, "top_logprobs": 2},
        ),
        400,
    )
    assert err["param"] == "top_logprobs"
    with pytest.raises(openai.NotFoundError) as nf:
        client.completions.create(model="gpt-17", prompt="hi")
    assert nf.value.body["param"] == "model" and nf.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as long:
        client.completions.create(model=SMOLLM2, prompt="hello world", max_tokens=5000)
    msg = long.value.body["message"]
    assert "2048" in msg and "5000" in msg and long.value.body["param"] == "max_tokens"
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model=SMOLLM2, prompt="hi " * 2100, max_tokens=1)
    # After all that, the server still serves.
    assert (
        client.completions.create(model=SMOLLM2, prompt="Hi", max_tokens=2).usage.completion_tokens
        == 2
    )


def test_metrics_after_traffic(server, client):
    client.completions.create(model=SMOLLM2, prompt="Hello there", max_tokens=4, temperature=0)
    text = httpx.get(server.url + "/metrics").text
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name_labels, value = line.rsplit(" ", 1)
            samples[name_labels] = float(value)

    def value(name, **labels):
        found = [
            v
            for k, v in samples.items()
            if k.split("{")[0] == name and all(f'{a}="{b}"' in k for a, b in labels.items())
        ]
        assert found, name
        return sum(found)

    assert value("infleet:num_requests_waiting") == 0 and value("infleet:num_requests_running") == 0
    assert 0 <= value("infleet:kv_cache_usage_perc") <= 1
    assert (
        value("infleet:prompt_tokens_total") > 20 and value("infleet:generation_tokens_total") >= 10
    )
    assert value("infleet:prefix_cache_hits_total") > 0
    assert value("infleet:prefix_cache_queries_total") >= value("infleet:prefix_cache_hits_total")
    assert value("infleet:num_preemptions_total") == 0
    assert value("infleet:request_success_total", finished_reason="length") >= 1
    assert value("infleet:time_to_first_token_seconds_count") >= 3
    assert value("infleet:inter_token_latency_seconds_count") >= 3
    assert value("infleet:e2e_request_latency_seconds_count") >= 3
    assert value("infleet:e2e_request_latency_seconds_bucket", le="+Inf") == value(
        "infleet:e2e_request_latency_seconds_count"
    )
