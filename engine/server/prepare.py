"""A request body -> what the engine runs: parsed, validated, templated and tokenized.

All of it is CPU work that grows with the body (JSON parsing, pydantic, the chat template,
BPE): the server runs these functions in a worker thread, never on the event loop, so a
megabyte prompt does not stall /health or other clients' streams.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from infleet.engine.errors import InvalidRequest
from infleet.engine.messages import SamplingParams
from infleet.engine.server import errors
from infleet.engine.server.protocol import ChatCompletionRequest, CompletionRequest, parse_request
from infleet.engine.server.responses import ChatFormat, CompletionFormat
from infleet.engine.server.token_texts import TokenTexts
from infleet.engine.tokenizer import ChatTemplateError, Tokenizer


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
    prompt_token_ids: list[int]
    params: SamplingParams
    fmt: CompletionFormat | ChatFormat


def _json(body: bytes) -> object:
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise errors.bad_request(f"the request body is not valid JSON: {err}") from None


def _check_model(model: ServedModel, name: str) -> None:
    if name != model.name:
        raise errors.model_not_found(name)


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


def prepare_completion(model: ServedModel, body: bytes) -> Prepared:
    req: CompletionRequest = parse_request(CompletionRequest, _json(body))
    _check_model(model, req.model)
    prompt = req.prompt_input()
    ids = model.tokenizer.encode(prompt) if isinstance(prompt, str) else prompt
    max_tokens = req.max_tokens or _default_max_tokens(model, len(ids), 16)
    check_prompt(model, ids, max_tokens, req.n)
    params = req.sampling_params(max_tokens, req.logprobs, model.generation_defaults)
    return Prepared(
        req, ids, params, CompletionFormat(req.model, model.texts, req.logprobs is not None)
    )


def prepare_chat(model: ServedModel, body: bytes) -> Prepared:
    req: ChatCompletionRequest = parse_request(ChatCompletionRequest, _json(body))
    _check_model(model, req.model)
    messages: list[dict[str, Any]] = [
        {"role": m.role, "content": m.text(), **({"name": m.name} if m.name else {})}
        for m in req.messages
    ]
    try:
        text = model.tokenizer.apply_chat_template(
            messages, add_generation_prompt=req.add_generation_prompt
        )
    except ChatTemplateError as err:
        raise errors.bad_request(
            f"the chat template rejected the messages: {err}", "messages"
        ) from None
    ids = model.tokenizer.encode(text, add_special_tokens=False)
    # Chat's default is "as much as the context allows", like OpenAI's.
    max_tokens = (
        req.max_completion_tokens or req.max_tokens or _default_max_tokens(model, len(ids), None)
    )
    check_prompt(model, ids, max_tokens, req.n)
    params = req.sampling_params(max_tokens, req.logprobs_count(), model.generation_defaults)
    return Prepared(req, ids, params, ChatFormat(req.model, model.texts, req.logprobs))
