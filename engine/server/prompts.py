"""/v1/completions extras: a list of prompts in one request, and `echo`.

A list of prompts (strings or token-id lists) becomes one engine request per prompt; their
choices are numbered prompt-major (prompt k, choice j -> index k*n + j), as OpenAI and
vLLM number them, and their streams are merged as tokens arrive. Room in the queue is
checked for all of them before any is submitted, so a 429 never leaves half a request
running.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from infleet.engine.errors import InvalidRequest, QueueFull
from infleet.engine.messages import SamplingParams
from infleet.engine.server.core_client import CoreClient
from infleet.engine.server.output_processor import RequestOutput
from infleet.engine.server.responses import Choice, CompletionFormat
from infleet.engine.server.token_texts import TokenTexts

MAX_PROMPTS = 64


def _is_ids(p: Any) -> bool:
    return isinstance(p, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in p)


def prompt_list(prompt: Any) -> list[str | list[int]]:
    """The request's prompts: a string, a list of token ids, or a list of either."""
    if isinstance(prompt, str) or (_is_ids(prompt) and prompt):
        return [prompt]
    if (
        isinstance(prompt, list)
        and prompt
        and all(isinstance(p, str) or _is_ids(p) for p in prompt)
    ):
        if len(prompt) > MAX_PROMPTS:
            raise InvalidRequest(f"at most {MAX_PROMPTS} prompts in one request", "prompt")
        if any(len(p) == 0 for p in prompt):
            raise InvalidRequest("a prompt is empty", "prompt")
        return list(prompt)
    raise InvalidRequest(
        "prompt must be a string, a list of token ids, or a list of either", "prompt"
    )


Track = Callable[[list[int], AsyncIterator[RequestOutput]], AsyncIterator[RequestOutput]]


def generate_all(
    core: CoreClient,
    prompts: list[list[int]],
    params: SamplingParams,
    track: Track | None = None,
    **kw: Any,
) -> AsyncIterator[tuple[int, RequestOutput]]:
    """CoreClient.generate over several prompts, as (choice index, output) pairs; raises
    QueueFull/CoreGone at once, before any prompt is submitted. The prompts were checked
    (prepare.py) before this. `track` wraps each prompt's stream (the router feed's)."""
    if len(prompts) > 1:
        waiting = core.num_waiting()
        if waiting + len(prompts) > core.max_queue:
            raise QueueFull(waiting, core.retry_after(waiting))
    streams = [core.generate(uuid.uuid4().hex, ids, params, **kw) for ids in prompts]
    if track is not None:
        streams = [track(ids, s) for ids, s in zip(prompts, streams, strict=True)]
    return _merge(streams, params.n)


async def _merge(
    streams: list[AsyncIterator[RequestOutput]], n: int
) -> AsyncIterator[tuple[int, RequestOutput]]:
    if len(streams) == 1:  # the common case: no tasks
        async with contextlib.aclosing(streams[0]) as only:
            async for out in only:
                yield out.index, out
        return
    queue: asyncio.Queue[tuple[int, RequestOutput] | BaseException] = asyncio.Queue()

    async def pump(k: int, stream: AsyncIterator[RequestOutput]) -> None:
        try:
            async for out in stream:
                await queue.put((k * n + out.index, out))
        except Exception as err:  # handed to the consumer, which raises it
            await queue.put(err)

    # Cancelling a pump raises inside its stream, whose cleanup aborts its request.
    tasks = [asyncio.create_task(pump(k, s)) for k, s in enumerate(streams)]
    unfinished = len(streams) * n
    try:
        while unfinished:
            item = await queue.get()
            if isinstance(item, BaseException):
                raise item
            if item[1].finished:
                unfinished -= 1
            yield item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class EchoFormat(CompletionFormat):
    """`echo: true`: each choice's text starts with its prompt."""

    def __init__(self, model: str, texts: TokenTexts, prompts: list[str], n: int):
        super().__init__(model, texts, False)
        self.prompts, self.n = prompts, n
        self._echoed: set[int] = set()

    def choice(self, index: int, c: Choice) -> dict[str, Any]:
        body = super().choice(index, c)
        body["text"] = self.prompts[index // self.n] + body["text"]
        return body

    def chunk(self, index: int, out: RequestOutput) -> dict[str, Any] | None:
        body = super().chunk(index, out)
        if index in self._echoed:
            return body
        self._echoed.add(index)
        prompt = self.prompts[index // self.n]
        if body is None:
            choice = {"index": index, "text": "", "logprobs": None, "finish_reason": None}
            body = self.envelope(self.chunk_object, choices=[choice])
        body["choices"][0]["text"] = prompt + body["choices"][0]["text"]
        return body
