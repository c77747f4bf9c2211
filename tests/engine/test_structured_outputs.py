"""Structured outputs and tool_choice through the real engine on SmolLM2 (openai SDK):
grammar-forced documents that always finish `stop` and validate, whatever the seed."""

from __future__ import annotations

import asyncio
import json

import httpx
import jsonschema
import openai
import pytest

from tests.engine.serving import SMOLLM2, ServerThread, smollm2_args

pytestmark = pytest.mark.slow
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 10},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "member": {"type": "boolean"},
        "role": {"enum": ["admin", "user", "guest"]},
        "skills": {"type": "array", "items": {"type": "string", "maxLength": 8}, "maxItems": 2},
        "address": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 10},
                "zip": {"type": "integer", "minimum": 0, "maximum": 99999},
            },
            "required": ["city", "zip"],
            "additionalProperties": False,
        },
    },
    "required": ["name", "age", "member", "role", "skills", "address"],
    "additionalProperties": False,
}
ASK = [{"role": "user", "content": "Describe a person as JSON."}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 20},
                "unit": {"enum": ["c", "f"]},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string", "maxLength": 12}},
            "required": ["zone"],
            "additionalProperties": False,
        },
    },
}


@pytest.fixture(scope="module")
def server():
    # `infleet serve`'s own path: the core (and its grammar constraints) in a child process.
    args = smollm2_args(model="builtin:" + SMOLLM2, max_model_len=2048)
    with ServerThread(args=args) as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def test_32_seeded_schema_documents_all_stop_and_validate(server):
    fmt = {
        "type": "json_schema",
        "json_schema": {"name": "person", "schema": PERSON, "strict": True},
    }

    async def one(client: openai.AsyncOpenAI, seed: int):
        return await client.chat.completions.create(
            model=SMOLLM2, messages=ASK, temperature=0.8, seed=seed, max_tokens=400,
            response_format=fmt,
        )  # fmt: skip

    async def main():
        client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
        async with client:
            return await asyncio.gather(*(one(client, seed) for seed in range(32)))

    docs = []
    for r in asyncio.run(main()):
        choice = r.choices[0]
        assert choice.finish_reason == "stop", choice.message.content
        text = choice.message.content
        doc = json.loads(text)
        jsonschema.validate(doc, PERSON)
        assert text == json.dumps(doc, separators=(",", ":"), ensure_ascii=False)  # compact
        docs.append(doc)
    # Sampling still chooses: not one minimal document 32 times.
    assert len({json.dumps(d, sort_keys=True) for d in docs}) >= 16
    assert len({d["name"] for d in docs}) >= 8 and len({d["age"] for d in docs}) >= 4


def test_json_object_mode_always_yields_an_object(client):
    r = client.chat.completions.create(
        model=SMOLLM2, messages=ASK, temperature=0.8, seed=1, max_tokens=60, n=3,
        response_format={"type": "json_object"},
    )  # fmt: skip
    for choice in r.choices:
        if choice.finish_reason == "stop":
            assert isinstance(json.loads(choice.message.content), dict)
        else:  # out of tokens: still the start of an object
            assert choice.message.content.startswith("{")
    assert any(c.finish_reason == "stop" for c in r.choices)


def test_vllm_structured_outputs_and_guided_fields(client):
    r = client.completions.create(
        model=SMOLLM2, prompt="Is the sky blue?", max_tokens=10, temperature=1.0, seed=3,
        extra_body={"structured_outputs": {"choice": ["yes", "no", "maybe"]}},
    )  # fmt: skip
    assert r.choices[0].text in ("yes", "no", "maybe")
    r = client.completions.create(
        model=SMOLLM2, prompt="A date:", max_tokens=20, temperature=1.0, seed=1,
        extra_body={"guided_regex": r"20[0-9]{2}-(0[1-9]|1[0-2])-[0-2][0-9]"},
    )  # fmt: skip
    import re

    assert re.fullmatch(r"20[0-9]{2}-(0[1-9]|1[0-2])-[0-2][0-9]", r.choices[0].text)
    r = client.completions.create(
        model=SMOLLM2, prompt="Answer:", max_tokens=20, temperature=1.0, seed=2,
        extra_body={"structured_outputs": {"grammar": 'root ::= "A" | "B" "!"'}},
    )  # fmt: skip
    assert r.choices[0].text in ("A", "B!")


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        (
            {"response_format": {"type": "json_object"}, "guided_regex": "a+"},
            "guided_regex",
        ),
        ({"guided_regex": "(unclosed"}, "guided_regex"),
        ({"structured_outputs": {"json": "{nope"}}, "structured_outputs.json"),
        ({"structured_outputs": {"choice": []}}, "structured_outputs.choice"),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
        ({"response_format": {"type": "xml"}}, "response_format.type"),
        ({"structured_outputs": {"yaml": "x"}}, "structured_outputs.yaml"),
    ],
)
def test_bad_structured_requests_name_the_field(server, extra, param):
    body = {"model": SMOLLM2, "messages": ASK, "max_tokens": 5, **extra}
    r = httpx.post(server.url + "/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


def test_tool_choice_named_is_forced_whole_and_streamed(client):
    kwargs = dict(
        model=SMOLLM2, temperature=0.8, seed=5, max_tokens=200, tools=[WEATHER, TIME],
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )  # fmt: skip
    r = client.chat.completions.create(**kwargs)
    (call,) = r.choices[0].message.tool_calls
    assert call.function.name == "get_weather" and call.id.startswith("call_")
    jsonschema.validate(json.loads(call.function.arguments), WEATHER["function"]["parameters"])
    assert r.choices[0].finish_reason == "tool_calls"
    chunks = list(client.chat.completions.create(**kwargs, stream=True))
    deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert deltas[0].function.name == "get_weather" and deltas[0].id
    args = "".join(d.function.arguments or "" for d in deltas)
    assert json.loads(args) == json.loads(call.function.arguments)  # same seed, same call
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_tool_choice_required_is_forced_whole_and_streamed(client):
    kwargs = dict(
        model=SMOLLM2, temperature=0.8, max_tokens=300, tools=[WEATHER, TIME],
        messages=[{"role": "user", "content": "What time is it in Tokyo?"}],
        tool_choice="required",
    )  # fmt: skip
    r = client.chat.completions.create(**kwargs, seed=0)
    calls = r.choices[0].message.tool_calls
    assert calls and r.choices[0].finish_reason == "tool_calls"
    for call in calls:
        tool = {"get_weather": WEATHER, "get_time": TIME}[call.function.name]
        jsonschema.validate(json.loads(call.function.arguments), tool["function"]["parameters"])
    chunks = list(client.chat.completions.create(**kwargs, seed=0, stream=True))
    deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert [(d.function.name, d.function.arguments) for d in deltas] == [
        (c.function.name, c.function.arguments) for c in calls
    ]  # same seed, same calls


def test_a_conversation_continues_after_the_tool_result(client, server):
    first = client.chat.completions.create(
        model=SMOLLM2, temperature=0, max_tokens=200, tools=[WEATHER],
        messages=[{"role": "user", "content": "Weather in Paris?"}], tool_choice="required",
    )  # fmt: skip
    call = first.choices[0].message.tool_calls[0]
    history = [
        {"role": "user", "content": "Weather in Paris?"},
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"},
    ]
    r = client.chat.completions.create(
        model=SMOLLM2, temperature=0, max_tokens=30, tools=[WEATHER], messages=history
    )
    assert r.choices[0].message.content  # tool_choice auto: an answer in words
    body = {"model": SMOLLM2, "messages": history, "tools": [WEATHER]}
    tokens = httpx.post(server.url + "/tokenize", json=body, timeout=60).json()["tokens"]
    prompt = httpx.post(
        server.url + "/detokenize", json={"model": SMOLLM2, "tokens": tokens}, timeout=60
    ).json()["prompt"]
    arguments = json.dumps(json.loads(call.function.arguments))
    assert f'{{"name": "get_weather", "arguments": {arguments}}}' in prompt
    assert "<tool_response>\n18C and sunny\n</tool_response>" in prompt
