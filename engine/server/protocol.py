"""OpenAI request bodies, validated strictly: a wrong type is a 400 naming the field.

Fields we do not implement are refused with a 400 naming them, fields no one defines are
ignored with a logged warning: the policy is engine/server/fields.py's.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from infleet.engine.errors import InvalidRequest
from infleet.engine.messages import SamplingParams, StructuredSpec
from infleet.engine.server.detokenizer import check_stop_strings
from infleet.engine.server.fields import check_fields
from infleet.engine.server.tool_request import AssistantToolCall, Tool, ToolChoice
from infleet.engine.structured.request import ResponseFormat, StructuredOutputs

MAX_N = 16
MAX_TOP_LOGPROBS = 20


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class StreamOptions(_Strict):
    include_usage: bool = False


class _Common(_Strict):
    model: str
    n: int = Field(1, ge=1, le=MAX_N)
    # None: the model's generation_config.json default (--generation-config), else OpenAI's.
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=-1)
    min_p: float | None = Field(None, ge=0.0, le=1.0)
    seed: int | None = None
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    repetition_penalty: float | None = Field(None, gt=0.0, le=10.0)
    stop: str | list[str] | None = None
    stop_token_ids: list[int] | None = None
    ignore_eos: bool = False
    skip_special_tokens: bool = True
    stream: bool = False
    stream_options: StreamOptions | None = None
    priority: int = 0
    cache_salt: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    # Structured outputs (engine/structured/request.py): OpenAI's, vLLM's, vLLM's older.
    response_format: ResponseFormat | None = None
    structured_outputs: StructuredOutputs | None = None
    guided_json: dict[str, Any] | str | None = None
    guided_regex: str | None = None
    guided_choice: list[str] | None = None
    guided_grammar: str | None = None
    min_tokens: int = Field(0, ge=0)
    logit_bias: dict[str, float] | None = None
    include_stop_str_in_output: bool = False

    @field_validator("logit_bias")
    @classmethod
    def _bias(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        for token, bias in (v or {}).items():
            if not token.isdigit():
                raise ValueError(f"keys are token ids, got {token!r}")
            if not -100 <= bias <= 100:
                raise ValueError(f"biases are in [-100, 100], got {bias} for token {token}")
        return v

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def sampling_params(
        self,
        max_tokens: int,
        logprobs: int | None,
        defaults: dict[str, float | int],
        structured: StructuredSpec | None = None,
    ) -> SamplingParams:
        """The request's SamplingParams (all n choices; the core gives choice i seed + i).

        `defaults` (from generation_config.json) fill the fields the request left out."""
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        check_stop_strings(stop)
        bias = {int(t): b for t, b in self.logit_bias.items()} if self.logit_bias else None

        def pick(name: str, openai_default: float | int) -> Any:
            sent = getattr(self, name)
            return sent if sent is not None else defaults.get(name, openai_default)

        return SamplingParams(
            max_tokens=max_tokens,
            temperature=float(pick("temperature", 1.0)),
            top_p=float(pick("top_p", 1.0)),
            top_k=max(int(pick("top_k", 0)), 0),
            min_p=float(pick("min_p", 0.0)),
            seed=self.seed,
            presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
            repetition_penalty=float(pick("repetition_penalty", 1.0)),
            stop=stop,
            stop_token_ids=tuple(self.stop_token_ids or ()),
            ignore_eos=self.ignore_eos,
            logprobs=logprobs,
            skip_special_tokens=self.skip_special_tokens,
            n=self.n,
            min_tokens=self.min_tokens,
            logit_bias=bias,
            include_stop_str_in_output=self.include_stop_str_in_output,
            structured=structured,
        )


class CompletionRequest(_Common):
    prompt: Any
    logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    echo: bool = False


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[AssistantToolCall] | None = None
    tool_call_id: str | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class ChatCompletionRequest(_Common):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool = True
    add_generation_prompt: bool = True

    def logprobs_count(self) -> int | None:
        if self.top_logprobs is not None and not self.logprobs:
            raise InvalidRequest("top_logprobs requires logprobs: true", "top_logprobs")
        return (self.top_logprobs or 0) if self.logprobs else None


def parse_request(model: type[_Strict], body: object) -> Any:
    """Validate a JSON body; the first problem becomes an InvalidRequest naming its field."""
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object", None)
    try:
        req = model.model_validate(body)
    except ValidationError as err:
        first = err.errors()[0]
        param = _param(first["loc"])
        raise InvalidRequest(f"{param or 'body'}: {first['msg']}", param) from None
    check_fields(model, req, body)  # the unknown-field policy: engine/server/fields.py
    return req


def _param(loc: tuple[int | str, ...]) -> str | None:
    # Union members appear in `loc` as type tags ("str", "list[int]"): keep field names
    # and list indices only.
    parts = [
        str(p) for p in loc if isinstance(p, int) or (p.isidentifier() and p not in _TYPE_TAGS)
    ]
    return ".".join(parts) or None


_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none", "literal"}
