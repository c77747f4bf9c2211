"""Each formerly ignored request field on a real SmolLM2 server: its effect, or a 400 naming
it; and the unknown-field policy (engine/server/fields.py)."""

from __future__ import annotations

import logging

import httpx
import pytest

from tests.engine.serving import SMOLLM2, ServerThread, smollm2_engine

pytestmark = pytest.mark.slow
PROMPT = "The capital of France is"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def server():
    with ServerThread(smollm2_engine(max_model_len=1024)) as s:
        yield s


def complete(server, **body) -> dict:
    r = httpx.post(
        server.url + "/v1/completions",
        json={"model": SMOLLM2, "prompt": PROMPT, "temperature": 0, **body},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    return r.json()


def chat(server, **body) -> dict:
    r = httpx.post(
        server.url + "/v1/chat/completions",
        json={"model": SMOLLM2, "messages": QUESTION, "temperature": 0, **body},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    return r.json()


def tokens(server, text: str) -> list[int]:
    body = {"model": SMOLLM2, "prompt": text, "add_special_tokens": False}
    return httpx.post(server.url + "/tokenize", json=body, timeout=60).json()["tokens"]


def test_logit_bias_bans_and_forces_tokens(server):
    greedy = complete(server, max_tokens=3)["choices"][0]["text"]
    first = tokens(server, greedy)[0]
    banned = complete(server, max_tokens=3, logit_bias={str(first): -100})["choices"][0]["text"]
    assert tokens(server, banned)[0] != first
    (forced_id,) = tokens(server, " banana")[:1]
    forced = complete(server, max_tokens=3, logit_bias={str(forced_id): 100})
    assert forced["choices"][0]["text"] == " banana" * 3


def test_min_tokens_holds_off_eos(server):
    short = chat(server, max_tokens=64)
    n = short["usage"]["completion_tokens"]
    assert short["choices"][0]["finish_reason"] == "stop" and n < 40
    longer = chat(server, max_tokens=64, min_tokens=n + 10)
    assert longer["usage"]["completion_tokens"] >= n + 10


def test_include_stop_str_in_output(server):
    answer = chat(server, max_tokens=32)["choices"][0]["message"]["content"]
    assert "Paris" in answer
    cut = chat(server, max_tokens=32, stop=["Paris"])["choices"][0]
    kept = chat(server, max_tokens=32, stop=["Paris"], include_stop_str_in_output=True)
    kept = kept["choices"][0]
    assert cut["finish_reason"] == kept["finish_reason"] == "stop"
    assert "Paris" not in cut["message"]["content"]
    assert kept["message"]["content"] == cut["message"]["content"] + "Paris"


def test_user_is_accepted_and_changes_nothing(server):
    a = complete(server, max_tokens=4)["choices"][0]["text"]
    assert complete(server, max_tokens=4, user="alice")["choices"][0]["text"] == a


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("suffix", "!"),
        ("best_of", 2),
        ("functions", [{"name": "f"}]),
        ("function_call", "auto"),
        ("store", True),
        ("audio", {"voice": "alloy"}),
        ("modalities", ["text", "audio"]),
        ("prediction", {"type": "content", "content": "x"}),
        ("logit_bias", {"hello": 1}),
        ("logit_bias", {"5": 101}),
        ("logit_bias", {"999999": 1}),  # outside the vocabulary
        ("min_tokens", -1),
    ],
)
def test_unimplemented_or_bad_fields_get_a_400_naming_them(server, field, value):
    r = httpx.post(
        server.url + "/v1/completions",
        json={"model": SMOLLM2, "prompt": PROMPT, "max_tokens": 2, field: value},
        timeout=60,
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == field


def test_min_tokens_above_max_tokens_is_named(server):
    body = {"model": SMOLLM2, "prompt": PROMPT, "max_tokens": 2, "min_tokens": 5}
    r = httpx.post(server.url + "/v1/completions", json=body, timeout=60)
    assert r.status_code == 400 and r.json()["error"]["param"] == "min_tokens"


def test_unknown_fields_are_ignored_with_a_warning(server, caplog):
    with caplog.at_level(logging.WARNING, logger="infleet.engine.server"):
        out = complete(server, max_tokens=2, frobnicate=True, metadata={"a": "b"}, store=False)
    assert out["usage"]["completion_tokens"] == 2
    warnings = [
        r.getMessage() for r in caplog.records if "unknown request fields" in r.getMessage()
    ]
    assert warnings == ["ignoring unknown request fields: frobnicate"]
