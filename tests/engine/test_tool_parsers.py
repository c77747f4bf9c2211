"""Tool calls from canned model text: the Hermes/Qwen and Llama-3 JSON parsers, the
template-family choice, and the streamed deltas as OpenAI sends them."""

from __future__ import annotations

import json

from infleet.engine.server.output_processor import RequestOutput
from infleet.engine.server.responses import Choice
from infleet.engine.server.tool_output import ToolChatFormat
from infleet.engine.server.tool_parsers import parser_for
from infleet.engine.server.tool_parsers.hermes import HermesParser
from infleet.engine.server.tool_parsers.llama3_json import Llama3JsonParser

WEATHER = '{"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}'


def test_hermes_finds_calls_and_keeps_the_content_around_them():
    text = f"Let me check.\n<tool_call>\n{WEATHER}\n</tool_call>\n<tool_call>{WEATHER}</tool_call>"
    content, calls = HermesParser().parse(text)
    assert content == "Let me check."
    assert [c.name for c in calls] == ["get_weather", "get_weather"]
    assert json.loads(calls[0].arguments) == {"city": "Paris", "unit": "c"}
    assert calls[0].id != calls[1].id and calls[0].id.startswith("call_")


def test_hermes_leaves_text_that_is_not_a_call():
    for text in ["no calls here", "<tool_call>{not json}</tool_call>", '<tool_call>{"x": 1}']:
        assert HermesParser().parse(text) == (text, [])
    # An unterminated but complete JSON call (the model stopped at </tool_call>'s eos).
    assert HermesParser().parse(f"<tool_call>\n{WEATHER}")[1][0].name == "get_weather"


def test_llama3_json_with_python_tag_and_several_calls():
    one = '{"name": "get_weather", "parameters": {"city": "Oslo"}}'
    _, calls = Llama3JsonParser().parse(f"<|python_tag|>{one}; {one}")
    assert [json.loads(c.arguments) for c in calls] == [{"city": "Oslo"}] * 2
    assert Llama3JsonParser().parse("The weather is fine.") == ("The weather is fine.", [])
    assert Llama3JsonParser().parse('{"no": "name"}') == ('{"no": "name"}', [])


def test_the_parser_follows_the_template_family():
    assert parser_for("{{ '<|python_tag|>' }} ipython").name == "llama3_json"
    assert parser_for("<tool_call> {{ tool_calls }}").name == "hermes"
    assert parser_for(None).name == "hermes"  # tools written into the prompt as Hermes


def _out(text: str, finished: bool = False) -> RequestOutput:
    return RequestOutput("r", text, [], [], finished, "stop" if finished else None, 3, 1, 0)


def _stream(fmt: ToolChatFormat, pieces: list[str]) -> list[dict]:
    chunks = [fmt.chunk(0, _out(p, i == len(pieces) - 1)) for i, p in enumerate(pieces)]
    return [c["choices"][0] for c in chunks if c is not None]


def test_auto_streams_content_then_the_call_and_never_a_partial_marker():
    text = f"Sure.<tool_call>\n{WEATHER}\n</tool_call>"
    pieces = [text[i : i + 3] for i in range(0, len(text), 3)]
    fmt = ToolChatFormat("m", None, False, "auto", HermesParser())
    choices = _stream(fmt, pieces)
    content = "".join(c["delta"].get("content", "") for c in choices)
    assert content == "Sure."
    calls = [tc for c in choices for tc in c["delta"].get("tool_calls", [])]
    assert len(calls) == 1 and calls[0]["index"] == 0 and calls[0]["type"] == "function"
    assert calls[0]["function"]["name"] == "get_weather"
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Paris", "unit": "c"}
    assert choices[-1]["finish_reason"] == "tool_calls"


def test_auto_without_a_call_is_plain_content():
    fmt = ToolChatFormat("m", None, False, "auto", HermesParser())
    choices = _stream(fmt, ["Paris is ", "lovely <", "3"])
    assert "".join(c["delta"].get("content", "") for c in choices) == "Paris is lovely <3"
    assert choices[-1]["finish_reason"] == "stop"
    c = Choice(text="Paris is lovely", finish_reason="stop")
    msg = fmt.choice(0, c)["message"]
    assert msg["content"] == "Paris is lovely" and "tool_calls" not in msg


def test_named_function_streams_its_arguments_as_they_come():
    fmt = ToolChatFormat("m", None, False, "get_weather", HermesParser())
    choices = _stream(fmt, ['{"city"', ':"Rome"', "}"])
    first = choices[0]["delta"]["tool_calls"][0]
    assert first["function"] == {"name": "get_weather", "arguments": '{"city"'}
    assert first["id"].startswith("call_")
    rest = [c["delta"]["tool_calls"][0] for c in choices[1:]]
    assert all(tc["index"] == 0 and "id" not in tc for tc in rest)
    args = "".join(tc["function"]["arguments"] for tc in [first, *rest])
    assert json.loads(args) == {"city": "Rome"}
    assert choices[-1]["finish_reason"] == "tool_calls"


def test_required_turns_the_forced_list_into_calls():
    fmt = ToolChatFormat("m", None, False, "required", HermesParser())
    text = '[{"name":"a","arguments":{}},{"name":"b","arguments":{"x":1}}]'
    body = fmt.choice(0, Choice(text=text, finish_reason="stop"))
    assert body["message"]["content"] is None and body["finish_reason"] == "tool_calls"
    assert [tc["function"]["name"] for tc in body["message"]["tool_calls"]] == ["a", "b"]
    calls = [
        tc for c in _stream(fmt, [text[:10], text[10:]]) for tc in c["delta"].get("tool_calls", [])
    ]
    assert [tc["index"] for tc in calls] == [0, 1]


def test_parallel_tool_calls_false_keeps_the_first_call():
    fmt = ToolChatFormat("m", None, False, "auto", HermesParser(), parallel=False)
    text = f"<tool_call>{WEATHER}</tool_call><tool_call>{WEATHER}</tool_call>"
    body = fmt.choice(0, Choice(text=text, finish_reason="stop"))
    assert len(body["message"]["tool_calls"]) == 1
