"""The API side of every request: the core's token deltas -> text deltas and metrics.

A request's output is a stream of `RequestOutput` deltas (new tokens, new text, finished
or not); the streaming server forwards them as they come, the non-streaming one joins
them. Text lags tokens where a possible stop string is held back. `OutputProcessor` keeps
one `RequestState` per choice and measures what only the side that receives tokens can:
time to first token, inter-token latency, end-to-end latency, token counters. Both the
in-process `LLMEngine` and the server's core client use it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from infleet.engine.messages import (
    CompletionDelta,
    CoreOutputs,
    CoreStats,
    SamplingParams,
    TokenLogprobs,
)
from infleet.engine.metrics import EngineMetrics
from infleet.engine.server.detokenizer import Decoder, IncrementalDetokenizer, StopStringFilter

log = logging.getLogger("infleet.engine")


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


class OutputProcessor:
    def __init__(self, tokenizer: Decoder, metrics: EngineMetrics):
        self.tokenizer = tokenizer
        self.metrics = metrics
        self.requests: dict[str, dict[int, RequestState]] = {}  # request id -> its choices

    def __len__(self) -> int:
        return len(self.requests)

    def add(
        self, request_id: str, prompt_token_ids: list[int], params: SamplingParams, arrival: float
    ) -> None:
        self.requests[request_id] = {
            i: RequestState.create(request_id, i, prompt_token_ids, params, self.tokenizer, arrival)
            for i in range(params.n)
        }

    def abort(self, request_id: str) -> None:
        """The client went away: its choices end as "abort" (the caller tells the core)."""
        for state in self.requests.pop(request_id, {}).values():
            self.metrics.record_finish("abort", time.monotonic() - state.arrival_time)

    def process(self, outputs: CoreOutputs) -> tuple[list[RequestOutput], list[tuple[str, int]]]:
        """One core step's deltas -> text deltas, and the (request, choice) pairs the core
        must abort: a stop string ended them, or their output could not be processed."""
        results: list[RequestOutput] = []
        to_abort: list[tuple[str, int]] = []
        for delta in outputs.deltas:
            state = self.requests.get(delta.request_id, {}).get(delta.index)
            if state is None:  # aborted here while its tokens were on the way
                continue
            try:
                out, core_goes_on = self._emit(state, delta)
            except Exception:
                log.exception("output processing failed for request %s", delta.request_id)
                self._finish(state, "error")
                out = state.take_output("error", error="internal error: output processing failed")
                core_goes_on = delta.finish_reason is None
            if core_goes_on:
                to_abort.append((delta.request_id, delta.index))
            results.append(out)
        self.record_stats(outputs.stats)
        return results, to_abort

    def fail_all(self, what: str) -> list[RequestOutput]:
        """End every request with an error (the core failed or is gone)."""
        results = []
        for choices in list(self.requests.values()):
            for state in list(choices.values()):
                self._finish(state, "error")
                results.append(state.take_output("error", error=f"internal error: {what}"))
        return results

    def record_stats(self, s: CoreStats) -> None:
        self.metrics.record_step(
            waiting=s.waiting,
            running=s.running,
            kv_usage=s.kv_usage,
            preemptions=s.preemptions_total,
            prefix_queries=s.prefix_queries_total,
            prefix_hits=s.prefix_hits_total,
        )
        if s.tier_metrics:
            self.metrics.core_text = s.tier_metrics
        self.metrics.record_spec(
            enabled=s.spec_enabled,
            drafts=s.spec_num_drafts_total,
            draft_tokens=s.spec_num_draft_tokens_total,
            accepted=s.spec_num_accepted_tokens_total,
            accepted_per_pos=s.spec_num_accepted_tokens_per_pos_total,
        )
        if s.lora is not None:
            self.metrics.record_lora(s.lora)

    def _emit(self, state: RequestState, delta: CompletionDelta) -> tuple[RequestOutput, bool]:
        previous = state.last_token_time
        had_tokens = state.num_output_tokens > 0
        reason = state.add_delta(delta)
        m = self.metrics
        if delta.new_token_ids:
            m.generation_tokens.inc(len(delta.new_token_ids))
            if not had_tokens:
                m.prompt_tokens.inc(state.num_prompt_tokens)
                m.ttft.observe(state.last_token_time - state.arrival_time)
            else:
                m.itl.observe(state.last_token_time - previous)
        if reason is not None:
            self._finish(state, reason)
        # A stop string ended it while the core would go on.
        return state.take_output(reason, error=delta.error), (
            reason is not None and delta.finish_reason is None
        )

    def _finish(self, state: RequestState, reason: str) -> None:
        choices = self.requests.get(state.request_id)
        if choices is not None and choices.pop(state.index, None) is not None and not choices:
            del self.requests[state.request_id]
        self.metrics.record_finish(reason, time.monotonic() - state.arrival_time)
