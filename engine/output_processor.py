"""Per-request output state: new tokens -> finish checks -> text deltas for the client.

A request's output is a stream of `RequestOutput` deltas (new tokens, new text, finished
or not); the streaming server forwards them as they come, the non-streaming one joins
them. Text lags tokens where a possible stop string is held back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from infleet.engine.sampler import TokenLogprobs
from infleet.engine.sequence import Sequence
from infleet.engine.server.detokenizer import Decoder, IncrementalDetokenizer, StopStringFilter


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


@dataclass(slots=True, eq=False)
class RequestState:
    seq: Sequence
    detokenizer: IncrementalDetokenizer
    stops: StopStringFilter
    eos_token_ids: frozenset[int]
    max_model_len: int
    new_token_ids: list[int] = field(default_factory=list)
    new_logprobs: list[TokenLogprobs] = field(default_factory=list)
    first_token_time: float | None = None
    last_token_time: float = 0.0

    @classmethod
    def create(
        cls, seq: Sequence, tokenizer: Decoder, eos_token_ids: frozenset[int], max_model_len: int
    ) -> RequestState:
        return cls(
            seq,
            IncrementalDetokenizer(tokenizer, seq.prompt_token_ids, seq.params.skip_special_tokens),
            StopStringFilter(seq.params.stop),
            eos_token_ids,
            max_model_len,
        )

    def add_token(self, token_id: int, logprobs: TokenLogprobs | None) -> str | None:
        """Record a sampled token; returns a finish reason (stop, length) or None."""
        seq, params = self.seq, self.seq.params
        seq.token_ids.append(token_id)
        self.new_token_ids.append(token_id)
        if logprobs is not None:
            self.new_logprobs.append(logprobs)
        now = time.monotonic()
        if self.first_token_time is None:
            self.first_token_time = now
        self.last_token_time = now
        # Stop tokens end the text without adding their own.
        if token_id in params.stop_token_ids or (
            not params.ignore_eos and token_id in self.eos_token_ids
        ):
            return "stop"
        if self.stops.add(self.detokenizer.add(token_id)):
            return "stop"
        if seq.num_output_tokens >= params.max_tokens or seq.num_tokens >= self.max_model_len:
            self.stops.add(self.detokenizer.flush())
            return "stop" if self.stops.stopped else "length"
        return None

    def take_output(self, finish_reason: str | None, error: str | None = None) -> RequestOutput:
        """The delta since the last call; finish_reason set means this is the last one."""
        finished = finish_reason is not None
        seq = self.seq
        out = RequestOutput(
            request_id=seq.request_id,
            text=self.stops.take(finished),
            token_ids=self.new_token_ids,
            logprobs=self.new_logprobs,
            finished=finished,
            finish_reason=finish_reason,
            num_prompt_tokens=seq.num_prompt_tokens,
            num_output_tokens=seq.num_output_tokens,
            num_cached_tokens=seq.num_cached_prompt_tokens,
            error=error,
        )
        self.new_token_ids, self.new_logprobs = [], []
        return out
