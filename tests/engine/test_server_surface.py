"""The OpenAI surface on a real SmolLM2 server: /tokenize and /detokenize, echo, a list of
prompts, tool-calling conversations rendered into the prompt, and the 400s that name a
field."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from infleet.engine.server.protocol import ChatCompletionRequest
from infleet.engine.server.tool_request import template_messages
from infleet.engine.tokenizer.chat_template import render_chat
from tests.engine.serving import SMOLLM2, ServerThread, smollm2_engine

pytestmark = pytest.mark.slow
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
HISTORY = [
    {"role": "user", "content": "Weather in Paris?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "18C and sunny"},
]


@pytest.fixture(scope="module")
def server():
    with ServerThread(smollm2_engine(max_model_len=2048)) as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def post(server, path: str, body: dict) -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=120)


def test_tokenize_and_detokenize_round_trip(server):
    r = post(server, "/tokenize", {"model": SMOLLM2, "prompt": "Hello world"})
    body = r.json()
    assert r.status_code == 200 and body["count"] == len(body["tokens"]) > 1
    assert body["max_model_len"] == 2048
    back = post(server, "/detokenize", {"model": SMOLLM2, "tokens": body["tokens"]})
    assert back.json() == {"prompt": "Hello world"}
    bad = post(server, "/detokenize", {"model": SMOLLM2, "tokens": [10**9]})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "tokens"
    assert post(server, "/tokenize", {"model": "nope", "prompt": "x"}).status_code == 404


def test_tokenize_renders_a_tool_conversation_into_the_prompt(server):
    r = post(server, "/tokenize", {"model": SMOLLM2, "messages": HISTORY, "tools": TOOLS})
    assert r.status_code == 200, r.text
    tokens = r.json()["tokens"]
    prompt = post(server, "/detokenize", {"model": SMOLLM2, "tokens": tokens}).json()["prompt"]
    # SmolLM2's template knows no tools: they are written in the Hermes format.
    assert '"name": "get_weather"' in prompt and "<tools>" in prompt
    assert (
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
        in prompt
    )
    assert "<tool_response>\n18C and sunny\n</tool_response>" in prompt
    call = prompt.index('<tool_call>\n{"name": "get_weather"')
    assert prompt.index("<tools>") < prompt.index("Weather in Paris?") < call < prompt.index("18C")
    assert prompt.rstrip().endswith("<|im_start|>assistant")


def test_a_tool_aware_template_gets_tools_and_calls_as_hf_templates_expect():
    template = (
        "{% for t in tools %}TOOL {{ t.function.name }}\n{% endfor %}"
        "{% for m in messages %}{{ m.role }}: {{ m.content }}"
        "{% for c in m.tool_calls or [] %}CALL {{ c.function.name }} "
        "{{ c.function.arguments | tojson }}{% endfor %}"
        "{% if m.tool_call_id %} ({{ m.tool_call_id }}){% endif %}{{ '\\n' }}{% endfor %}"
    )
    req = ChatCompletionRequest.model_validate({"model": "m", "messages": HISTORY, "tools": TOOLS})
    messages = template_messages(req.messages, req.tools, aware=True)
    tools = [t.model_dump(exclude_none=True) for t in req.tools]
    text = render_chat(
        template, messages, add_generation_prompt=False, bos_token="", eos_token="", tools=tools
    )
    assert text.splitlines() == [
        "TOOL get_weather",
        "user: Weather in Paris?",
        'assistant: CALL get_weather {"city": "Paris"}',
        "tool: 18C and sunny (call_1)",
    ]


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
        ({"tools": None, "tool_choice": "required"}, "tool_choice"),
        (
            {"tools": [{"type": "function", "function": {"name": "bad name!"}}]},
            "tools.0.function.name",
        ),
    ],
)
def test_bad_tool_requests_name_the_field(server, extra, param):
    body = {"model": SMOLLM2, "messages": HISTORY[:1], "tools": TOOLS, **extra}
    r = post(server, "/v1/chat/completions", body)
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text


def test_bad_history_arguments_name_the_message(server):
    history = json.loads(json.dumps(HISTORY))
    history[1]["tool_calls"][0]["function"]["arguments"] = "not json"
    r = post(server, "/v1/chat/completions", {"model": SMOLLM2, "messages": history})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "messages.1.tool_calls.0.function.arguments"


def test_echo_prepends_the_prompt_whole_and_streamed(client):
    r = client.completions.create(
        model=SMOLLM2, prompt="The capital of France is", max_tokens=4, temperature=0, echo=True
    )
    assert r.choices[0].text.startswith("The capital of France is")
    assert len(r.choices[0].text) > len("The capital of France is")
    stream = client.completions.create(
        model=SMOLLM2, prompt="The capital of France is", max_tokens=4, temperature=0,
        echo=True, stream=True,
    )  # fmt: skip
    assert "".join(c.choices[0].text for c in stream) == r.choices[0].text


def test_echo_with_logprobs_is_refused_by_name(server):
    body = {"model": SMOLLM2, "prompt": "x", "echo": True, "logprobs": 1}
    r = post(server, "/v1/completions", body)
    assert r.status_code == 400 and r.json()["error"]["param"] == "echo"


def test_a_list_of_prompts_gets_prompt_major_choices(client):
    prompts = ["The capital of France is", "One, two, three,"]
    one = [
        client.completions.create(model=SMOLLM2, prompt=p, max_tokens=5, temperature=0)
        for p in prompts
    ]
    r = client.completions.create(model=SMOLLM2, prompt=prompts, max_tokens=5, temperature=0, n=2)
    assert [c.index for c in r.choices] == [0, 1, 2, 3]
    texts = {c.index: c.text for c in r.choices}
    assert texts[0] == texts[1] == one[0].choices[0].text
    assert texts[2] == texts[3] == one[1].choices[0].text
    assert r.usage.prompt_tokens == sum(o.usage.prompt_tokens for o in one)
    stream = client.completions.create(
        model=SMOLLM2, prompt=prompts, max_tokens=5, temperature=0, stream=True
    )
    streamed: dict[int, str] = {}
    for chunk in stream:
        for c in chunk.choices:
            streamed[c.index] = streamed.get(c.index, "") + c.text
    assert streamed == {0: one[0].choices[0].text, 1: one[1].choices[0].text}
    ids = client.completions.create(model=SMOLLM2, prompt=[[1, 2, 3], [4, 5]], max_tokens=1)
    assert len(ids.choices) == 2 and ids.usage.prompt_tokens == 5
