"""The synchronous engine: requests in, one `step()` at a time, output deltas out.

A step schedules a flat batch, runs one forward, samples where a sequence reached its end,
and turns new tokens into text. Failures stay with the request that caused them: a batch
whose forward (or sampling) raises is retried slice by slice, and only the slices that
still fail end their requests with an error; the engine keeps serving the rest.
`AsyncEngine` runs this in a thread behind the HTTP server; `infleet bench` drives it
directly.
"""

from __future__ import annotations

import logging
import time

import torch

from infleet.engine.args import EngineArgs
from infleet.engine.block_manager import BlockManager
from infleet.engine.errors import InvalidRequest
from infleet.engine.kv_sizing import resolve_kv_pool
from infleet.engine.loader import LoadedModel, load_model
from infleet.engine.metrics import EngineMetrics
from infleet.engine.output_processor import RequestOutput, RequestState
from infleet.engine.runner import ModelRunner, SeqSlice
from infleet.engine.sampler import Sampler, TokenLogprobs
from infleet.engine.scheduler import ScheduledBatch, Scheduler, SchedulerConfig
from infleet.engine.sequence import SamplingParams, Sequence

log = logging.getLogger("infleet.engine")


class LLMEngine:
    def __init__(self, args: EngineArgs, loaded: LoadedModel | None = None):
        self.args = args
        self.loaded = loaded or load_model(
            args.model, device=args.device, dtype=args.dtype, quantization=args.quantization
        )
        self.tokenizer = self.loaded.tokenizer
        self.model_name = args.served_model_name or self.loaded.served_name
        self.vocab_size = self.loaded.config.vocab_size
        pool = resolve_kv_pool(args, self.loaded)
        self.num_blocks, self.max_model_len = pool.num_blocks, pool.max_model_len
        self.kv_bytes_per_block = pool.bytes_per_block
        self.runner = ModelRunner(
            self.loaded,
            num_blocks=self.num_blocks,
            block_size=args.block_size,
            kv_cache_dtype=args.kv_cache_dtype,
            attention_backend=args.attention_backend,
        )
        self.block_manager = BlockManager(
            self.num_blocks, args.block_size, args.enable_prefix_caching
        )
        self.scheduler = Scheduler(
            SchedulerConfig(args.max_num_seqs, args.max_num_batched_tokens), self.block_manager
        )
        self.sampler = Sampler()
        self.metrics = EngineMetrics(self.model_name)
        self.eos_token_ids = frozenset(self.tokenizer.eos_token_ids)
        self.requests: dict[str, RequestState] = {}

    # -- requests ---------------------------------------------------------------------

    def validate(self, prompt_token_ids: list[int], params: SamplingParams) -> None:
        """Raise InvalidRequest (HTTP 400) for a request that can never be served."""
        n = len(prompt_token_ids)
        if n == 0:
            raise InvalidRequest("the prompt is empty", "prompt")
        if any(not 0 <= t < self.vocab_size for t in prompt_token_ids):
            raise InvalidRequest(
                f"the prompt has token ids outside the vocabulary [0, {self.vocab_size})", "prompt"
            )
        if n + params.max_tokens > self.max_model_len:
            raise InvalidRequest(
                f"this model's maximum context length is {self.max_model_len} tokens; the request "
                f"has {n} prompt tokens and asks for {params.max_tokens} completion tokens "
                f"({n + params.max_tokens} in total)",
                "max_tokens" if n < self.max_model_len else "prompt",
            )

    def add_request(
        self,
        request_id: str,
        prompt_token_ids: list[int],
        params: SamplingParams,
        *,
        priority: int = 0,
        cache_salt: str = "",
        arrival_time: float | None = None,
    ) -> None:
        if request_id in self.requests:
            raise InvalidRequest(f"request id {request_id!r} is already in flight", "request_id")
        self.validate(prompt_token_ids, params)
        seq = Sequence(request_id, list(prompt_token_ids), params, priority, cache_salt)
        if arrival_time is not None:
            seq.arrival_time = arrival_time
        self.requests[request_id] = RequestState.create(
            seq, self.tokenizer, self.eos_token_ids, self.max_model_len
        )
        self.scheduler.add(seq)

    def abort(self, request_id: str) -> None:
        """Drop a request (client gone): its blocks are free when this returns."""
        state = self.requests.pop(request_id, None)
        if state is not None:
            self.scheduler.finish(state.seq, "abort")
            self.metrics.record_finish("abort", time.monotonic() - state.seq.arrival_time)

    def has_unfinished(self) -> bool:
        return bool(self.requests)

    def fail_all(self, what: str) -> list[RequestOutput]:
        """End every request with an error (the step itself broke)."""
        outputs = []
        for state in list(self.requests.values()):
            try:
                outputs.append(self._fail(state.seq, what))
            except Exception:
                log.exception("could not fail request %s cleanly", state.seq.request_id)
                self.requests.pop(state.seq.request_id, None)
                outputs.append(self.rejected(state.seq.request_id, f"internal error: {what}"))
        return outputs

    @staticmethod
    def rejected(request_id: str, message: str) -> RequestOutput:
        """The final output of a request that never got to run."""
        return RequestOutput(request_id, "", [], [], True, "error", 0, 0, 0, error=message)

    # -- the step ---------------------------------------------------------------------

    def step(self) -> list[RequestOutput]:
        batch = self.scheduler.schedule()
        outputs: list[RequestOutput] = []
        if len(batch):
            logits, failed = self._forward(batch)
            for i in failed:
                outputs.append(self._fail(batch.seqs[i], "the model forward failed"))
            ok = [i for i in range(len(batch)) if i not in failed]
            survivors = ScheduledBatch(
                [batch.seqs[i] for i in ok], [batch.num_new_tokens[i] for i in ok]
            )
            needs_sample = self.scheduler.finish_step(survivors)
            to_sample = [i for i, needs in zip(ok, needs_sample, strict=True) if needs]
            if to_sample:
                outputs += self._sample_and_emit(
                    [batch.seqs[i] for i in to_sample], logits[to_sample]
                )
        self.record_metrics()
        return outputs

    def _forward(self, batch: ScheduledBatch) -> tuple[torch.Tensor, set[int]]:
        slices = [
            SeqSlice(
                seq.token_ids[seq.num_computed_tokens : seq.num_computed_tokens + n],
                seq.num_computed_tokens,
                seq.block_table,
            )
            for seq, n in zip(batch.seqs, batch.num_new_tokens, strict=True)
        ]
        try:
            return self.runner.forward(slices), set()
        except Exception:
            if len(slices) == 1:
                log.exception("forward failed for request %s", batch.seqs[0].request_id)
                return torch.empty(0), {0}
            log.exception("batched forward failed; retrying its %d slices one by one", len(slices))
        rows: list[torch.Tensor | None] = []
        failed: set[int] = set()
        for i, s in enumerate(slices):
            try:
                rows.append(self.runner.forward([s])[0])
            except Exception:
                log.exception("forward failed for request %s", batch.seqs[i].request_id)
                failed.add(i)
                rows.append(None)
        good = next((r for r in rows if r is not None), None)
        if good is None:
            return torch.empty(0), failed
        return torch.stack([good if r is None else r for r in rows]), failed

    def _sample_and_emit(self, seqs: list[Sequence], logits: torch.Tensor) -> list[RequestOutput]:
        try:
            results = list(zip(*self.sampler(logits, seqs), strict=True))
        except Exception:
            log.exception("batched sampling failed; sampling its rows one by one")
            results = []
            for i, seq in enumerate(seqs):
                try:
                    tokens, lps = self.sampler(logits[i : i + 1], [seq])
                    results.append((tokens[0], lps[0]))
                except Exception:
                    log.exception("sampling failed for request %s", seq.request_id)
                    results.append(None)
        outputs = []
        for seq, result in zip(seqs, results, strict=True):
            if result is None:
                outputs.append(self._fail(seq, "sampling failed"))
                continue
            try:
                outputs.append(self._emit(seq, *result))
            except Exception:
                log.exception("output processing failed for request %s", seq.request_id)
                outputs.append(self._fail(seq, "output processing failed"))
        return outputs

    def _emit(self, seq: Sequence, token_id: int, logprobs: TokenLogprobs | None) -> RequestOutput:
        state = self.requests[seq.request_id]
        previous = state.last_token_time
        reason = state.add_token(token_id, logprobs)
        m = self.metrics
        m.generation_tokens.inc()
        if seq.num_output_tokens == 1:
            m.prompt_tokens.inc(seq.num_prompt_tokens)
            m.ttft.observe(state.last_token_time - seq.arrival_time)
        else:
            m.itl.observe(state.last_token_time - previous)
        if reason is not None:
            self._finish(state, reason)
        return state.take_output(reason)

    def _fail(self, seq: Sequence, what: str) -> RequestOutput:
        state = self.requests[seq.request_id]
        self._finish(state, "error")
        return state.take_output("error", error=f"internal error: {what}")

    def _finish(self, state: RequestState, reason: str) -> None:
        self.requests.pop(state.seq.request_id, None)
        self.scheduler.finish(state.seq, reason)
        self.metrics.record_finish(reason, time.monotonic() - state.seq.arrival_time)

    def record_metrics(self) -> None:
        bm = self.block_manager
        self.metrics.record_step(
            waiting=self.scheduler.num_waiting,
            running=self.scheduler.num_running,
            kv_usage=bm.usage,
            preemptions=self.scheduler.num_preemptions,
            prefix_queries=bm.prefix_queries,
            prefix_hits=bm.prefix_hits,
        )
