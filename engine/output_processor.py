"""Per-request output state: new tokens -> finish checks -> text deltas for the client.

A request's output is a stream of `RequestOutput` deltas (new tokens, new text, finished
or not); the streaming server forwards them as they come, the non-streaming one joins
them. Text lags tokens where a possible stop string is held back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from infleet.engine.detokenizer import Decoder, IncrementalDetokenizer, StopStringFilter
from infleet.engine.messages import CompletionDelta, SamplingParams, TokenLogprobs


@dataclass(slots=True)
class RequestOutput:
    request_id: str
    text: str  # new text since the previous output
    token_ids: list[int]  # new tokens since the previous output
    logprobs: list[TokenLogprobs]  # one per new token when the request asked for logprobs
    finished: bool
    finish_reason: str | None  # stop, length, abort, error
    num_prompt_tokens: int
    num_output_tokens: int
    num_cached_tokens: int
    error: str | None = None
    index: int = 0  # which of the request's n choices


@dataclass(slots=True, eq=False)
class RequestState:
    """One choice of a request on the API side: the core's token deltas become text."""

    request_id: str
    index: int
    arrival_time: float
    detokenizer: IncrementalDetokenizer
    stops: StopStringFilter
    num_prompt_tokens: int = 0
    num_output_tokens: int = 0
    num_cached_tokens: int = 0
    new_token_ids: list[int] = field(default_factory=list)
    new_logprobs: list[TokenLogprobs] = field(default_factory=list)
    first_token_time: float | None = None
    last_token_time: float = 0.0

    @classmethod
    def create(
        cls,
        request_id: str,
        index: int,
        prompt_token_ids: list[int],
        params: SamplingParams,
        tokenizer: Decoder,
        arrival_time: float,
    ) -> RequestState:
        return cls(
            request_id,
            index,
            arrival_time,
            IncrementalDetokenizer(tokenizer, prompt_token_ids, params.skip_special_tokens),
            StopStringFilter(params.stop, params.include_stop_str_in_output),
            num_prompt_tokens=len(prompt_token_ids),
        )

    def add_delta(self, delta: CompletionDelta) -> str | None:
        """Take the core's new tokens; returns the finish reason: the core's, or "stop"
        when a stop string ended the text (the caller then aborts the core's request)."""
        self.num_cached_tokens = delta.num_cached_tokens
        if delta.logprobs:
            self.new_logprobs += delta.logprobs
        if delta.new_token_ids:
            now = time.monotonic()
            if self.first_token_time is None:
                self.first_token_time = now
            self.last_token_time = now
        for token_id in delta.new_token_ids:
            self.num_output_tokens += 1
            self.new_token_ids.append(token_id)
            # Stop tokens end the text without adding their own.
            if token_id == delta.stop_token_id:
                continue
            if self.stops.add(self.detokenizer.add(token_id)):
                return "stop"
        if delta.finish_reason == "length":
            self.stops.add(self.detokenizer.flush())
            return "stop" if self.stops.stopped else "length"
        return delta.finish_reason

    def take_output(self, finish_reason: str | None, error: str | None = None) -> RequestOutput:
        """The delta since the last call; finish_reason set means this is the last one."""
        finished = finish_reason is not None
        out = RequestOutput(
            request_id=self.request_id,
            text=self.stops.take(finished),
            token_ids=self.new_token_ids,
            logprobs=self.new_logprobs,
            finished=finished,
            finish_reason=finish_reason,
            num_prompt_tokens=self.num_prompt_tokens,
            num_output_tokens=self.num_output_tokens,
            num_cached_tokens=self.num_cached_tokens,
            error=error,
            index=self.index,
        )
        self.new_token_ids, self.new_logprobs = [], []
        return out
