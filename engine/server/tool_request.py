"""The request side of tool calling: `tools`, `tool_choice`, and the history's calls.

Tool messages and assistant `tool_calls` go to the chat template, never dropped. A
template that knows tools (it mentions `tool_calls`) gets them as HF templates expect:
`tools=[...]` and arguments as objects. One that does not gets the Hermes format written
into the prompt (the tool list in the system message, calls as `<tool_call>` JSON, results
as `<tool_response>`), so even SmolLM2 sees a consistent conversation and the Hermes
parser reads its answer.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from infleet.engine.errors import InvalidRequest

FUNCTION_NAME = r"^[A-Za-z0-9_-]{1,64}$"


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class FunctionDef(_Model):
    name: str = Field(pattern=FUNCTION_NAME)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(_Model):
    type: Literal["function"]
    function: FunctionDef


class NamedFunction(_Model):
    name: str


class NamedToolChoice(_Model):
    type: Literal["function"]
    function: NamedFunction


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class FunctionCall(_Model):
    name: str
    arguments: str


class AssistantToolCall(_Model):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


def tool_mode(tools: list[Tool] | None, choice: ToolChoice | None) -> str | None:
    """None (no tools in play), 'auto', 'required' or the forced function's name."""
    if isinstance(choice, NamedToolChoice):
        names = {t.function.name for t in tools or ()}
        if choice.function.name not in names:
            raise InvalidRequest(
                f"tool_choice names {choice.function.name!r}, which is not in tools",
                "tool_choice",
            )
        return choice.function.name
    if choice == "required" and not tools:
        raise InvalidRequest("tool_choice required needs a non-empty tools list", "tool_choice")
    if not tools or choice == "none":
        return None
    return choice or "auto"


def template_aware(chat_template: str | None) -> bool:
    return "tool_calls" in (chat_template or "")


def _arguments(call: AssistantToolCall, where: str) -> dict[str, Any]:
    try:
        args = json.loads(call.function.arguments)
    except json.JSONDecodeError:
        args = None
    if not isinstance(args, dict):
        raise InvalidRequest("arguments must be a JSON object in a string", where)
    return args


def template_messages(messages: list[Any], tools: list[Tool] | None, aware: bool) -> list[dict]:
    """The chat's messages as the template gets them (see the module docstring)."""
    out: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool_call_id -> function name, for the tool messages
    for i, m in enumerate(messages):
        msg: dict[str, Any] = {"role": m.role, "content": m.text()}
        if m.name:
            msg["name"] = m.name
        calls = []
        for j, call in enumerate(m.tool_calls or ()):
            where = f"messages.{i}.tool_calls.{j}.function.arguments"
            fn = {"name": call.function.name, "arguments": _arguments(call, where)}
            calls.append({"id": call.id, "type": "function", "function": fn})
            names[call.id] = call.function.name
        if m.role == "tool":
            if not m.tool_call_id:
                raise InvalidRequest("a tool message needs tool_call_id", f"messages.{i}")
            msg["tool_call_id"] = m.tool_call_id
            msg.setdefault("name", names.get(m.tool_call_id, ""))
        if aware:
            if calls:
                msg["tool_calls"] = calls
        elif calls:
            blocks = [_hermes_call(c["function"]) for c in calls]
            msg["content"] = "\n".join(filter(None, [msg["content"], *blocks]))
        elif m.role == "tool":
            msg = {
                "role": "user",
                "content": f"<tool_response>\n{msg['content']}\n</tool_response>",
            }
        out.append(msg)
    if tools and not aware:
        _add_tool_system_prompt(out, tools)
    return out


def _hermes_call(fn: dict[str, Any]) -> str:
    return "<tool_call>\n" + json.dumps(fn, ensure_ascii=False) + "\n</tool_call>"


def _add_tool_system_prompt(messages: list[dict], tools: list[Tool]) -> None:
    listing = "\n".join(json.dumps(t.model_dump(exclude_none=True)) for t in tools)
    text = (
        "# Tools\n\nYou can call the functions listed in <tools></tools> to answer. "
        f"<tools>\n{listing}\n</tools>\n\nTo call one, answer with its name and JSON "
        "arguments inside <tool_call></tool_call> tags:\n<tool_call>\n"
        '{"name": "<function name>", "arguments": {<arguments>}}\n</tool_call>'
    )
    if messages and messages[0]["role"] in ("system", "developer"):
        messages[0]["content"] = (messages[0]["content"] + "\n\n" + text).strip()
    else:
        messages.insert(0, {"role": "system", "content": text})


def template_tools(tools: list[Tool] | None, aware: bool) -> list[dict] | None:
    """The `tools` variable of a tool-aware template."""
    if not tools or not aware:
        return None
    return [t.model_dump(exclude_none=True) for t in tools]


def chat_inputs(req: Any, chat_template: str | None) -> tuple[str | None, list[dict], dict]:
    """(tool mode, the template's messages, its extra variables) for a chat request."""
    mode = tool_mode(req.tools, req.tool_choice)
    aware = template_aware(chat_template)
    tools = req.tools if mode else None
    extra = {"tools": template_tools(tools, aware)} if tools and aware else {}
    return mode, template_messages(req.messages, tools, aware), extra
