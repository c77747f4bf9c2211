"""A request body -> what the engine runs: parsed, validated, templated and tokenized.

All of it is CPU work that grows with the body (JSON parsing, pydantic, the chat template,
BPE): the server runs these functions in a worker thread, never on the event loop, so a
megabyte prompt does not stall /health or other clients' streams.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from infleet.engine.errors import InvalidRequest
from infleet.engine.messages import AdapterRef, SamplingParams
from infleet.engine.server import errors
from infleet.engine.server.chat_prompt import chat_prompt
from infleet.engine.server.prompts import EchoFormat, prompt_list
from infleet.engine.server.protocol import ChatCompletionRequest, CompletionRequest, parse_request
from infleet.engine.server.responses import ChatFormat, CompletionFormat
from infleet.engine.server.token_texts import TokenTexts
from infleet.engine.server.tool_output import chat_format
from infleet.engine.structured.request import structured_spec
from infleet.engine.tokenizer import Tokenizer


@dataclass(slots=True)
class ServedModel:
    """What the API side knows of the model it serves."""

    name: str  # the `model` clients send
    root: str  # --model
    max_model_len: int
    vocab_size: int  # the model's: prompt ids must be below it
    tokenizer: Tokenizer
    generation_defaults: dict[str, float | int] = field(default_factory=dict)
    # The core's KV pool and batch (CoreReady); 0: no limit known here.
    num_blocks: int = 0
    block_size: int = 16
    max_num_seqs: int = 0
    texts: TokenTexts = field(init=False)

    def __post_init__(self) -> None:
        self.texts = TokenTexts(self.tokenizer)


@dataclass(slots=True)
class Prepared:
    req: CompletionRequest | ChatCompletionRequest
    prompts: list[list[int]]  # one engine request each (a completion's list of prompts)
    params: SamplingParams
    fmt: CompletionFormat | ChatFormat
    lora: AdapterRef | None = None  # the adapter `model` names; None: the base model


# The adapter a `model` name means to this caller (engine/adapters/hooks.py), None if none.
AdapterLookup = Callable[[str], AdapterRef | None]


def _no_adapters(name: str) -> None:
    return None


def parse_json(body: bytes) -> object:
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise errors.bad_request(f"the request body is not valid JSON: {err}") from None


def _check_model(
    model: ServedModel, name: str, adapter_for: AdapterLookup = _no_adapters
) -> AdapterRef | None:
    """The adapter `name` selects (None: the base model); 404 if it is neither."""
    if name == model.name:
        return None
    lora = adapter_for(name)
    if lora is None:
        raise errors.model_not_found(name)
    return lora


def _default_max_tokens(model: ServedModel, num_prompt_tokens: int, fallback: int | None) -> int:
    """The model's max_new_tokens, else `fallback`, else what the context leaves."""
    room = max(1, model.max_model_len - num_prompt_tokens)
    cap = model.generation_defaults.get("max_tokens")
    if cap is not None:
        return max(1, min(int(cap), room))
    return fallback if fallback is not None else room


def check_prompt(model: ServedModel, ids: list[int], max_tokens: int, num_choices: int) -> None:
    """Raise InvalidRequest (400) for a request the core could never serve.

    The core checks the same limits (EngineCore.validate) and would end such a request
    with an error; checked here, before it is sent, the client gets a 400 naming the limit.
    """
    n = len(ids)
    if n == 0:
        raise InvalidRequest("the prompt is empty", "prompt")
    if n + max_tokens > model.max_model_len:
        raise InvalidRequest(
            f"this model's maximum context length is {model.max_model_len} tokens; the request "
            f"has {n} prompt tokens and asks for {max_tokens} completion tokens "
            f"({n + max_tokens} in total)",
            "max_tokens" if n < model.max_model_len else "prompt",
        )
    if min(ids) < 0 or max(ids) >= model.vocab_size:
        raise InvalidRequest(
            f"the prompt has token ids outside the vocabulary [0, {model.vocab_size})", "prompt"
        )
    blocks = -(-(n + max_tokens) // model.block_size)
    if model.num_blocks and blocks > model.num_blocks:
        raise InvalidRequest(
            f"the request needs {blocks} KV cache blocks ({n} prompt + {max_tokens} "
            f"completion tokens) and the KV cache has {model.num_blocks}",
            "max_tokens",
        )
    if model.max_num_seqs and num_choices > model.max_num_seqs:
        raise InvalidRequest(
            f"n is {num_choices}; this engine runs at most {model.max_num_seqs} sequences", "n"
        )


def check_params(model: ServedModel, params: SamplingParams) -> None:
    """Raise InvalidRequest (400) for sampling fields the core would refuse: its own refusal
    comes back from another process, too late for a 400."""
    if params.min_tokens > params.max_tokens:
        raise InvalidRequest(
            f"min_tokens must be in [0, max_tokens={params.max_tokens}], got {params.min_tokens}",
            "min_tokens",
        )
    if params.logit_bias and any(not 0 <= t < model.vocab_size for t in params.logit_bias):
        raise InvalidRequest(
            f"logit_bias has token ids outside the vocabulary [0, {model.vocab_size})",
            "logit_bias",
        )


def prepare_completion(
    model: ServedModel, body: bytes, adapter_for: AdapterLookup = _no_adapters
) -> Prepared:
    req: CompletionRequest = parse_request(CompletionRequest, parse_json(body))
    lora = _check_model(model, req.model, adapter_for)
    prompts = [
        model.tokenizer.encode(p) if isinstance(p, str) else p for p in prompt_list(req.prompt)
    ]
    longest = max(map(len, prompts))
    max_tokens = req.max_tokens or _default_max_tokens(model, longest, 16)
    for ids in prompts:  # all of them before any is submitted
        check_prompt(model, ids, max_tokens, req.n)
    params = req.sampling_params(
        max_tokens, req.logprobs, model.generation_defaults, structured_spec(req)
    )
    check_params(model, params)
    fmt: CompletionFormat
    if req.echo:
        echoed = [model.tokenizer.decode(ids, skip_special_tokens=False) for ids in prompts]
        fmt = EchoFormat(req.model, model.texts, echoed, params.n)
    else:
        fmt = CompletionFormat(req.model, model.texts, req.logprobs is not None)
    return Prepared(req, prompts, params, fmt, lora)


def prepare_chat(
    model: ServedModel, body: bytes, adapter_for: AdapterLookup = _no_adapters
) -> Prepared:
    req: ChatCompletionRequest = parse_request(ChatCompletionRequest, parse_json(body))
    lora = _check_model(model, req.model, adapter_for)
    tool_mode, text = chat_prompt(model.tokenizer, req)
    ids = model.tokenizer.encode(text, add_special_tokens=False)
    # Chat's default is "as much as the context allows", like OpenAI's.
    max_tokens = (
        req.max_completion_tokens or req.max_tokens or _default_max_tokens(model, len(ids), None)
    )
    check_prompt(model, ids, max_tokens, req.n)
    params = req.sampling_params(
        max_tokens,
        req.logprobs_count(),
        model.generation_defaults,
        structured_spec(req, tool_mode),
    )
    check_params(model, params)
    fmt = chat_format(
        req.model,
        model.texts,
        req.logprobs,
        tool_mode,
        model.tokenizer.chat_template,
        req.parallel_tool_calls,
    )
    return Prepared(req, [ids], params, fmt, lora)
