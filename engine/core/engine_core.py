"""EngineCore: requests in, one `step()` at a time, token deltas out (engine/messages.py).

The core schedules, runs the model and samples; it knows token ids only. Text, stop
strings and latency metrics belong to the API side (engine/output_processor.py, or the
server's client when the core runs in its own process). A step schedules a flat batch,
runs one forward, samples where a sequence reached its end, and applies the token-level
finish rules (eos, stop_token_ids, max_tokens, the context limit).

Failures stay with the request that caused them: a batch whose forward (or sampling)
raises is retried slice by slice, and only the slices that still fail end their requests
with an error; the core keeps serving the rest.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import torch

from infleet.engine.args import EngineArgs
from infleet.engine.core.block_manager import BlockManager
from infleet.engine.core.kv_sizing import resolve_kv_pool
from infleet.engine.core.runner import ModelRunner, SeqSlice
from infleet.engine.core.sampler import Sampler
from infleet.engine.core.scheduler import ScheduledBatch, Scheduler, SchedulerConfig
from infleet.engine.core.sequence import Sequence
from infleet.engine.errors import InvalidRequest
from infleet.engine.loader import LoadedModel, load_model
from infleet.engine.messages import (
    CompletionDelta,
    CoreOutputs,
    CoreReady,
    CoreRequest,
    CoreStats,
    SamplingParams,
    TokenLogprobs,
)

log = logging.getLogger("infleet.engine")


class EngineCore:
    def __init__(self, args: EngineArgs, loaded: LoadedModel | None = None):
        self.args = args
        self.loaded = loaded or load_model(args.model, device=args.device, dtype=args.dtype)
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
        self.eos_token_ids = frozenset(self.loaded.tokenizer.eos_token_ids)
        self.requests: dict[str, list[Sequence]] = {}  # request id -> its live choices
        self.prompt_tokens_computed = 0

    def ready(self) -> CoreReady:
        return CoreReady(
            model_name=self.model_name,
            max_model_len=self.max_model_len,
            vocab_size=self.vocab_size,
            num_blocks=self.num_blocks,
            block_size=self.args.block_size,
            kv_bytes_per_block=self.kv_bytes_per_block,
            device=str(self.loaded.device),
            dtype=str(self.loaded.dtype).removeprefix("torch."),
            attention_backend=self.runner.backend.name,
            eos_token_ids=sorted(self.eos_token_ids),
        )

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
        if params.n < 1:
            raise InvalidRequest(f"n must be >= 1, got {params.n}", "n")

    def add_request(self, request: CoreRequest) -> None:
        rid = request.request_id
        if rid in self.requests:
            raise InvalidRequest(f"request id {rid!r} is already in flight", "request_id")
        params = request.params
        self.validate(request.prompt_token_ids, params)
        arrival = request.arrival_time or time.monotonic()
        seqs = []
        for i in range(params.n):
            seq = Sequence(
                rid, list(request.prompt_token_ids), params, request.priority,
                request.cache_salt, index=i, arrival_time=arrival,
            )  # fmt: skip
            seqs.append(seq)
            self.scheduler.add(seq)
        self.requests[rid] = seqs

    def abort(self, request_ids: Iterable[str], index: int | None = None) -> None:
        """Drop requests (client gone, stop string seen), or only choice `index` of each:
        their blocks are free on return."""
        for rid in request_ids:
            for seq in list(self.requests.get(rid, ())):
                if index is None or seq.index == index:
                    self._finish(seq, "abort")

    def has_unfinished(self) -> bool:
        return bool(self.requests)

    def fail_all(self, what: str) -> CoreOutputs:
        """End every request with an error (the step itself broke)."""
        deltas = []
        for seqs in list(self.requests.values()):
            for seq in list(seqs):
                deltas.append(self._fail(seq, what))
        self.requests.clear()
        return CoreOutputs(deltas, self.stats())

    def shutdown(self) -> None:
        self.abort(list(self.requests))

    # -- the step ---------------------------------------------------------------------

    def step(self) -> CoreOutputs:
        batch = self.scheduler.schedule()
        deltas: list[CompletionDelta] = []
        if len(batch):
            logits, failed = self._forward(batch)
            for i in failed:
                deltas.append(self._fail(batch.seqs[i], "the model forward failed"))
            ok = [i for i in range(len(batch)) if i not in failed]
            survivors = ScheduledBatch(
                [batch.seqs[i] for i in ok], [batch.num_new_tokens[i] for i in ok]
            )
            self._count_prompt_tokens(survivors)
            needs_sample = self.scheduler.finish_step(survivors)
            to_sample = [i for i, needs in zip(ok, needs_sample, strict=True) if needs]
            if to_sample:
                deltas += self._sample_and_emit(
                    [batch.seqs[i] for i in to_sample], logits[to_sample]
                )
        return CoreOutputs(deltas, self.stats())

    def _count_prompt_tokens(self, batch: ScheduledBatch) -> None:
        """Prompt tokens the model runs this step (recomputes after preemption included)."""
        for seq, n in zip(batch.seqs, batch.num_new_tokens, strict=True):
            self.prompt_tokens_computed += max(
                0, min(n, seq.num_prompt_tokens - seq.num_computed_tokens)
            )

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

    def _sample_and_emit(self, seqs: list[Sequence], logits: torch.Tensor) -> list[CompletionDelta]:
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
        deltas = []
        for seq, result in zip(seqs, results, strict=True):
            if result is None:
                deltas.append(self._fail(seq, "sampling failed"))
            else:
                deltas.append(self._append(seq, *result))
        return deltas

    def _append(self, seq: Sequence, token_id: int, lp: TokenLogprobs | None) -> CompletionDelta:
        """Record a sampled token and apply the token-level finish rules."""
        seq.token_ids.append(token_id)
        reason, stop_token = finish_reason(seq, token_id, self.eos_token_ids, self.max_model_len)
        if reason is not None:
            self._finish(seq, reason)
        return CompletionDelta(
            seq.request_id, seq.index, [token_id], None if lp is None else [lp], reason,
            stop_token, seq.num_prompt_tokens, seq.num_cached_prompt_tokens,
        )  # fmt: skip

    def _fail(self, seq: Sequence, what: str) -> CompletionDelta:
        self._finish(seq, "error")
        return CompletionDelta(
            seq.request_id, seq.index, [], None, "error", None, seq.num_prompt_tokens,
            seq.num_cached_prompt_tokens, error=f"internal error: {what}",
        )  # fmt: skip

    def _finish(self, seq: Sequence, reason: str) -> None:
        self.scheduler.finish(seq, reason)
        choices = self.requests.get(seq.request_id)
        if choices is not None and seq in choices:
            choices.remove(seq)
            if not choices:
                del self.requests[seq.request_id]

    def stats(self) -> CoreStats:
        bm = self.block_manager
        return CoreStats(
            waiting=self.scheduler.num_waiting,
            running=self.scheduler.num_running,
            kv_usage=bm.usage,
            preemptions_total=self.scheduler.num_preemptions,
            prefix_queries_total=bm.prefix_queries,
            prefix_hits_total=bm.prefix_hits,
            prompt_tokens_computed_total=self.prompt_tokens_computed,
        )


def finish_reason(
    seq: Sequence, token_id: int, eos_token_ids: frozenset[int], max_model_len: int
) -> tuple[str | None, int | None]:
    """(reason, stop token) after seq got token_id: a stop token ends it as "stop" (the
    token is not part of the text), running out of max_tokens or context as "length"."""
    params = seq.params
    if token_id in params.stop_token_ids or (not params.ignore_eos and token_id in eos_token_ids):
        return "stop", token_id
    if seq.num_output_tokens >= params.max_tokens or seq.num_tokens >= max_model_len:
        return "length", None
    return None, None
