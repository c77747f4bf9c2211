"""EngineCore: requests in, one `step()` at a time, token deltas out (engine/messages.py).

The core schedules, runs the model and samples; it knows token ids only. Text, stop
strings and latency metrics belong to the API side (engine/output_processor.py, or the
server's client when the core runs in its own process).

A step has a host half and a device half. The host half (this thread) schedules a batch,
builds its inputs and, once the device half has run, turns sampled tokens into deltas and
applies the token-level finish rules (eos, stop_token_ids, max_tokens, constraints). The
device half (forward, sampling) runs on one "device thread", in submission order, like a
CUDA stream.

With async scheduling (the default) `step()` submits step N+1 before it waits for step N:
the host schedules and prepares N+1 while the device runs N, and handles N's output while
the device runs N+1. N's sampled tokens stay on the device and are fed into N+1 there (a
PLACEHOLDER stands in for them on the host until N's output is read). The cost: a request
that ends at step N (eos, a stop token) has already been given a row in N+1, whose result
is dropped: one wasted slot per finished request. A request that will surely end by
length is not scheduled again, so that case wastes nothing. Deltas come out one `step()`
later than without async scheduling.

Failures stay with the request that caused them: a batch whose forward (or sampling)
raises is retried slice by slice (row by row), and only the slices that still fail end
their requests with an error; the core keeps serving the rest.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import torch

from infleet.engine.args import EngineArgs
from infleet.engine.attention import AttentionContext
from infleet.engine.core import logits_processors
from infleet.engine.core.block_manager import BlockManager
from infleet.engine.core.kv_sizing import resolve_kv_pool
from infleet.engine.core.kv_tiers import KvTiers
from infleet.engine.core.kv_tiers_build import TierRegistry, build_kv_tiers
from infleet.engine.core.lora_state import EngineLoRA, SlotWrite
from infleet.engine.core.runner import LoRAStep, ModelRunner, SeqSlice
from infleet.engine.core.sampler import SampleFlags, SampleResult, sample
from infleet.engine.core.sampling_state import LAST_TOKEN, SamplingState, request_seed
from infleet.engine.core.scheduler import ScheduledBatch, Scheduler, SchedulerConfig
from infleet.engine.core.sequence import PLACEHOLDER, Sequence, SequenceStatus
from infleet.engine.distributed.launch import RankGroup, agree_num_blocks, world_size
from infleet.engine.errors import InvalidRequest
from infleet.engine.loader import LoadedModel, load_model, model_path
from infleet.engine.messages import (
    CompletionDelta,
    CoreOutputs,
    CoreReady,
    CoreRequest,
    CoreStats,
    SamplingParams,
    TokenLogprobs,
)
from infleet.engine.spec.setup import build_spec_decoder
from infleet.engine.spec.verify import verify
from infleet.kv_tiering import TransferHandle
from infleet.lora.errors import AdapterError

log = logging.getLogger("infleet.engine")
# The KV tiers' metrics text costs milliseconds to render: at most this often while busy.
TIER_METRICS_PERIOD_S = 0.25


@dataclass(slots=True)
class SlotInit:
    """A sequence taking a persistent-batch row: written on the device thread."""

    slot: int
    params: SamplingParams
    seed: int
    prompt_ids: list[int]
    output_ids: list[int]
    stop_ids: list[int]


@dataclass(slots=True)
class Job:
    """What the device thread runs for one step."""

    slices: list[SeqSlice]
    prepared: tuple[torch.Tensor, AttentionContext] | None  # None: prepare failed on the host
    slice_slots: list[int]  # each slice's slot (for token feedback)
    feedback: list[int]  # slices whose last input token is their slot's last sampled one
    slot_inits: list[SlotInit]
    sample_rows: list[int]  # logits row per sampled row (a fork repeats its parent's)
    sample_slots: list[int]
    flags: SampleFlags
    bitmask: torch.Tensor | None
    block_copies: list[tuple[int, int]]  # (source, destination): forks' partial blocks
    fences: list[TransferHandle] = field(default_factory=list)  # spills to finish first
    # Speculation: logits per slice (1 + its drafts), drafts per sampled row; None: none.
    num_logits: list[int] | None = None
    drafts: list[list[int]] | None = None
    params: list[SamplingParams] | None = None  # per sampled row, with drafts
    lora_slots: list[int] | None = None  # per slice: its adapter's device slot, -1 none
    lora_batch: LoRAStep | None = None  # the step's token -> slot layout
    lora_writes: list[SlotWrite] = field(default_factory=list)  # adapters to copy first


@dataclass(slots=True)
class DeviceOutput:
    failed_slices: set[int] = field(default_factory=set)
    failed_rows: set[int] = field(default_factory=set)
    tokens: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprobs | None] = field(default_factory=list)
    seconds: float = 0.0  # the step's time on the device thread (the recompute rate)
    # Speculation: per row, every kept token (accepted drafts, then the target's own).
    spec_tokens: list[list[int]] = field(default_factory=list)
    spec_logprobs: list[list[TokenLogprobs | None]] = field(default_factory=list)


@dataclass(slots=True)
class Launched:
    """A submitted step: what the host needs to read its output."""

    batch: ScheduledBatch
    ends: list[int]  # per slice: tokens computed once it ran
    epochs: list[int]  # per slice: the sequence's preemption count at launch
    rows: list[tuple[Sequence, int]]  # per sampled row: sequence, index its token goes to
    future: Future[DeviceOutput]
    drafts: list[list[int]] | None = None  # per sampled row: the drafts it verifies


class EngineCore:
    def __init__(self, args: EngineArgs, loaded: LoadedModel | None = None):
        self.args = args
        # Tensor parallel: the other ranks start, and this process joins them, before the
        # model is built (each layer takes its shard). engine/distributed/launch.py
        self.ranks = RankGroup(args) if world_size(args) > 1 else None
        self.loaded = loaded or load_model(
            args.model, device=args.device, dtype=args.dtype, quantization=args.quantization
        )
        self.model_name = args.served_model_name or self.loaded.served_name
        self.vocab_size = self.loaded.config.vocab_size
        pool = resolve_kv_pool(args, self.loaded)
        if self.ranks is not None:  # every rank's pool the same size
            pool.num_blocks = agree_num_blocks(pool.num_blocks, self.loaded.device)
        self.num_blocks, self.max_model_len = pool.num_blocks, pool.max_model_len
        self.kv_bytes_per_block = pool.bytes_per_block
        self.runner = ModelRunner(
            self.loaded,
            num_blocks=self.num_blocks,
            block_size=args.block_size,
            kv_cache_dtype=args.kv_cache_dtype,
            attention_backend=args.attention_backend,
            cuda_graph_max_batch=0 if args.enforce_eager or self.ranks else args.max_num_seqs,
        )
        if self.ranks is not None:
            self.runner = self.ranks.lead(self.runner)
        self.block_manager = BlockManager(
            self.num_blocks, args.block_size, args.enable_prefix_caching
        )
        self.scheduler = Scheduler(
            SchedulerConfig(args.max_num_seqs, args.max_num_batched_tokens), self.block_manager
        )
        self.lora: EngineLoRA | None = None
        if args.enable_lora:
            self.lora = EngineLoRA(
                self.loaded.model, self.loaded.config, max_loras=args.max_loras,
                max_cpu_loras=args.max_cpu_loras, max_rank=args.max_lora_rank,
                dtype=self.loaded.dtype, device=self.loaded.device,
            )  # fmt: skip
            self.scheduler.hold_back = self.lora.refused
        self.device = self.loaded.device
        self.sampling = SamplingState(args.max_num_seqs, self.vocab_size, self.device)
        self.eos_token_ids = frozenset(self.loaded.tokenizer.eos_token_ids)
        self.async_scheduling = args.async_scheduling
        self.spec = build_spec_decoder(args, self.loaded, self.runner)
        if self.spec is not None and self.async_scheduling:
            # Drafts are proposed from the last sampled token, so it must be on the host.
            log.info("speculative decoding is on: async scheduling is off")
            self.async_scheduling = False
        self.requests: dict[str, list[Sequence]] = {}  # request id -> its live choices
        self.prompt_tokens_computed = 0
        self._device = ThreadPoolExecutor(max_workers=1, thread_name_prefix="infleet-device")
        self._in_flight: Launched | None = None
        self._evicted: list[bytes] = []  # cached blocks evicted since the last outputs
        self.block_manager.on_evict = self._evicted.append
        self.tiers: KvTiers | None = None
        self.tier_registry: TierRegistry | None = None
        self._tier_text, self._tier_text_at = b"", float("-inf")
        if args.kv_dram_size or args.kv_nvme_size:
            self.tier_registry = TierRegistry(self.model_name)
            self.tiers = build_kv_tiers(
                args, self.loaded, self.runner.kv_cache, self.block_manager,
                model_path(args.model), self.tier_registry,
            )  # fmt: skip
            self.scheduler.tiers = self.tiers

    def _take_evicted(self) -> list[bytes]:
        evicted = self._evicted[:]
        self._evicted.clear()
        return evicted

    def ready(self) -> CoreReady:
        config = self.loaded.config
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
            prefix_caching=self.args.enable_prefix_caching,
            hidden_size=config.hidden_size,
            num_layers=config.num_layers,
            q_size=config.num_heads * config.head_dim,
            kv_size=config.num_kv_heads * config.head_dim,
            # 0: no adapters on the MLP (a MoE's experts), as lora_state.base_shape_of says.
            intermediate_size=0 if config.moe is not None else config.intermediate_size,
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
        blocks = self.block_manager.blocks_needed(n + params.max_tokens)
        if blocks > self.num_blocks:
            raise InvalidRequest(
                f"the request needs {blocks} KV cache blocks ({n} prompt + {params.max_tokens} "
                f"completion tokens) and the KV cache has {self.num_blocks}",
                "max_tokens",
            )
        if params.n < 1:
            raise InvalidRequest(f"n must be >= 1, got {params.n}", "n")
        if params.n > self.args.max_num_seqs:
            raise InvalidRequest(
                f"n is {params.n}; this engine runs at most {self.args.max_num_seqs} sequences",
                "n",
            )
        if params.max_tokens < 1:
            raise InvalidRequest(f"max_tokens must be >= 1, got {params.max_tokens}", "max_tokens")
        if not 0 <= params.min_tokens <= params.max_tokens:
            raise InvalidRequest(
                f"min_tokens must be in [0, max_tokens={params.max_tokens}], "
                f"got {params.min_tokens}",
                "min_tokens",
            )
        if params.logit_bias and any(not 0 <= t < self.vocab_size for t in params.logit_bias):
            raise InvalidRequest(
                f"logit_bias has token ids outside the vocabulary [0, {self.vocab_size})",
                "logit_bias",
            )

    def add_request(self, request: CoreRequest) -> None:
        rid = request.request_id
        if rid in self.requests:
            raise InvalidRequest(f"request id {rid!r} is already in flight", "request_id")
        params = request.params
        self.validate(request.prompt_token_ids, params)
        arrival = request.arrival_time or time.monotonic()
        lora, salt = request.lora, request.cache_salt
        if lora is not None:
            if self.lora is None:
                raise InvalidRequest(f"adapter {lora.name!r}: LoRA is not enabled", "model")
            salt = lora.salted(salt)
        seqs = []
        for i in range(params.n):
            seq = Sequence(
                rid, list(request.prompt_token_ids), params, request.priority, salt,
                lora=lora, index=i, arrival_time=arrival, seed=request_seed(params, i),
            )  # fmt: skip
            if params.structured is not None:
                try:
                    seq.constraint = logits_processors.build_constraint(
                        params.structured, self.loaded.tokenizer
                    )
                except ValueError as err:
                    raise InvalidRequest(str(err), "response_format") from err
            seqs.append(seq)
        if self.lora is not None:
            for added, seq in enumerate(seqs):
                try:
                    self.lora.add(seq)
                except AdapterError as err:
                    for earlier in seqs[:added]:
                        self.lora.finish(earlier)
                    raise InvalidRequest(err.message, "model") from err
        # Choices 1..n-1 fork from choice 0 once its prompt is computed: one prefill.
        seqs[0].forks = seqs[1:]
        for seq in seqs[1:]:
            seq.status = SequenceStatus.FORK_PENDING
        self.scheduler.add(seqs[0])
        self.requests[rid] = seqs

    def abort(self, request_ids: Iterable[str], index: int | None = None) -> None:
        """Drop requests (client gone, stop string seen), or only choice `index` of each:
        their blocks are free on return."""
        for rid in request_ids:
            for seq in list(self.requests.get(rid, ())):
                if index is None or seq.index == index:
                    self._finish(seq, "abort")

    def unload_adapter(self, lora_id: int) -> None:
        """The API side unloaded it: forgotten once no request of it is left."""
        if self.lora is not None:
            self.lora.unload(lora_id)

    def has_unfinished(self) -> bool:
        return bool(self.requests) or self._in_flight is not None

    def fail_all(self, what: str) -> CoreOutputs:
        """End every request with an error (the step itself broke)."""
        self._in_flight = None  # its output, if it ever comes, has no one left to go to
        deltas = []
        for seqs in list(self.requests.values()):
            for seq in list(seqs):
                deltas.append(self._fail(seq, what))
        self.requests.clear()
        return CoreOutputs(deltas, self.stats(), self._take_evicted())

    def shutdown(self, grace_s: float | None = None) -> None:
        """Stop: abort what runs; the KV tiers write what is queued for NVMe within
        `grace_s` (None: --shutdown-grace-seconds)."""
        self.abort(list(self.requests))
        self._in_flight = None
        self._device.shutdown(wait=True)
        if self.ranks is not None:
            self.ranks.stop()
        if self.tiers is not None:
            self.tiers.poll()
            grace = self.args.shutdown_grace_seconds if grace_s is None else grace_s
            self.tiers.close(grace)

    # -- the step ---------------------------------------------------------------------

    def step(self) -> CoreOutputs:
        if self.tiers is not None:
            self.tiers.poll()
        launched = self._launch()
        if launched is None and self._in_flight is None and self.tiers is not None:
            self.tiers.wait(0.005)  # only restores are under way: do not spin
        if self.async_scheduling:
            done, self._in_flight = self._in_flight, launched
        else:
            done = launched
        deltas = self._process(done) if done is not None else []
        return CoreOutputs(deltas, self.stats(), self._take_evicted())

    # host, before the device: schedule, prepare, submit

    def _launch(self) -> Launched | None:
        spec = self.spec
        if spec is not None:
            spec.before_schedule(self.scheduler.running, self.max_model_len)
        batch = self.scheduler.schedule()
        if spec is not None:
            spec.after_schedule(batch, self.scheduler.running)
        for seq in batch.preempted:
            self._release_slot(seq)
        lora_slots = None
        if self.lora is not None:
            lora_slots = self.lora.slots_for(batch.seqs, batch.preempted)
        if not len(batch):
            self._flush_tiers()
            return None
        slot_inits = []
        for seq in batch.seqs:
            if seq.slot is None:
                slot_inits.append(self._take_slot(seq))
        slices, feedback = [], []
        for i, (seq, n) in enumerate(zip(batch.seqs, batch.num_new_tokens, strict=True)):
            start = seq.num_computed_tokens
            tokens = seq.token_ids[start : start + n]
            if tokens[-1] == PLACEHOLDER:  # still on the device: fed there
                tokens[-1] = 0
                feedback.append(i)
            slices.append(SeqSlice(tokens, start, seq.block_table))
            self.prompt_tokens_computed += max(0, min(n, seq.num_prompt_tokens - start))
        ends = [s.start_pos + len(s.token_ids) for s in slices]
        epochs = [seq.num_preemptions for seq in batch.seqs]
        needs_sample = self.scheduler.advance(batch)
        # Speculation: a slice with d drafts needs logits at its last 1 + d tokens.
        num_logits = [1 + seq.num_spec_tokens for seq in batch.seqs]
        first_logit = [0, *itertools.accumulate(num_logits)]
        drafts: list[list[int]] | None = None
        if spec is not None:
            spec.stats.num_target_forwards += 1
            if first_logit[-1] > len(batch):
                drafts = []

        rows: list[tuple[Sequence, int]] = []
        sample_rows: list[int] = []
        copies: list[tuple[int, int]] = []
        for i, needs in enumerate(needs_sample):
            if not needs:
                continue
            seq = batch.seqs[i]
            forks = self._fork(seq, copies, slot_inits) if seq.forks else []
            for s in [seq, *forks]:
                if drafts is not None:
                    d = s.num_spec_tokens
                    drafts.append(s.token_ids[len(s.token_ids) - d :] if d else [])
                rows.append((s, len(s.token_ids)))
                sample_rows.append(first_logit[i])
                s.token_ids.append(PLACEHOLDER)
                s.num_pending += 1
        self._flush_tiers()  # after forks: they may evict blocks too
        fences = self.tiers.take_fences() if self.tiers is not None else []
        params = [s.params for s, _ in rows]
        bitmask = self._bitmask(rows)
        try:
            prepared: tuple[torch.Tensor, AttentionContext] | None = self.runner.prepare(slices)
        except Exception:
            log.exception("preparing a batch of %d slices failed", len(slices))
            prepared = None
        job = Job(
            slices=slices,
            prepared=prepared,
            slice_slots=[seq.slot for seq in batch.seqs],  # type: ignore[misc]
            feedback=feedback,
            slot_inits=slot_inits,
            sample_rows=sample_rows,
            sample_slots=[s.slot for s, _ in rows],  # type: ignore[misc]
            flags=SampleFlags.of(params, self.vocab_size),
            bitmask=bitmask,
            block_copies=copies,
            fences=fences,
            num_logits=None if drafts is None else num_logits,
            drafts=drafts,
            params=None if drafts is None else params,
        )
        if self.lora is not None and lora_slots is not None:
            job.lora_slots, job.lora_writes = lora_slots, self.lora.take_writes()
            job.lora_batch = self.lora.batch(lora_slots, [len(s.token_ids) for s in slices])
        future = self._device.submit(self._run_on_device, job)
        return Launched(batch, ends, epochs, rows, future, drafts)

    def _flush_tiers(self) -> None:
        if self.tiers is None:
            return
        if self.tiers.must_follow_step and self._in_flight is not None:
            # Its copies run on other threads (or the side stream): order them after the
            # step in flight, which may still write the blocks they read or fill.
            wait([self._in_flight.future])
        self.tiers.flush()

    def _take_slot(self, seq: Sequence) -> SlotInit:
        seq.slot = self.sampling.allocate()
        p = seq.params
        stop_ids = list(p.stop_token_ids) + ([] if p.ignore_eos else sorted(self.eos_token_ids))
        return SlotInit(seq.slot, p, seq.seed, seq.prompt_token_ids, seq.output_token_ids, stop_ids)

    def _release_slot(self, seq: Sequence) -> None:
        if seq.slot is not None:
            self.sampling.release(seq.slot)
            seq.slot = None

    def _fork(
        self, parent: Sequence, copies: list[tuple[int, int]], slot_inits: list[SlotInit]
    ) -> list[Sequence]:
        """Choices 1..n-1 of parent's request, now that its prompt is computed: they take
        its blocks (a partial last block is copied on the device after the forward) and
        sample their first tokens from its logits. A choice that finds no room waits in
        the queue like any request (its prefix is then cached)."""
        forked = []
        for child in parent.forks:
            if child.status is not SequenceStatus.FORK_PENDING:
                continue  # aborted meanwhile
            pair = None
            if self.scheduler.num_running < self.args.max_num_seqs:
                pair = self.block_manager.fork(parent, child)
            if pair is None:
                self.scheduler.add(child)
                continue
            if pair[0] >= 0:
                copies.append(pair)
            child.num_cached_prompt_tokens = parent.num_cached_prompt_tokens
            child.status = SequenceStatus.RUNNING
            self.scheduler.running.append(child)
            slot_inits.append(self._take_slot(child))
            forked.append(child)
        parent.forks = []
        return forked

    def _bitmask(self, rows: list[tuple[Sequence, int]]) -> torch.Tensor | None:
        constrained = [(r, s) for r, (s, _) in enumerate(rows) if s.constraint is not None]
        if not constrained:
            return None
        bitmask = logits_processors.new_bitmask(len(rows), self.vocab_size)
        for r, seq in constrained:
            seq.constraint.fill_bitmask(bitmask, r)
        return bitmask

    # the device thread

    def _run_on_device(self, job: Job) -> DeviceOutput:
        start = time.perf_counter()
        with torch.inference_mode():
            for handle in job.fences:  # evicted blocks' spills read them before we write
                handle.fence()
            for init in job.slot_inits:
                self.sampling.write_slot(
                    init.slot, init.params, init.seed, init.prompt_ids, init.output_ids,
                    init.stop_ids,
                )  # fmt: skip
            if job.lora_writes and self.lora is not None:
                self.lora.write(job.lora_writes)
            out = DeviceOutput()
            logits = self._forward(job, out)
            for src, dst in job.block_copies:
                self.runner.copy_block(src, dst)
            if job.sample_rows:
                self._sample(job, logits, out)
            out.seconds = time.perf_counter() - start
            return out

    def _feed(self, input_ids: torch.Tensor, at: list[int], slots: list[int]) -> None:
        """Write the slots' last sampled tokens (still on the device) into input_ids[at]."""
        if at:
            dev = input_ids.device
            slot_ids = torch.tensor(slots, device=dev)
            input_ids[torch.tensor(at, device=dev)] = self.sampling.ints[slot_ids, LAST_TOKEN]

    def _forward(self, job: Job, out: DeviceOutput) -> torch.Tensor:
        if job.prepared is not None:
            input_ids, ctx = job.prepared
            ends = list(itertools.accumulate(ctx.query_lens_host))
            self._feed(
                input_ids, [ends[i] - 1 for i in job.feedback],
                [job.slice_slots[i] for i in job.feedback],
            )  # fmt: skip
            try:
                return self.runner.run(input_ids, ctx, job.num_logits, job.lora_batch)
            except Exception:
                log.exception(
                    "batched forward failed; retrying its %d slices one by one", len(job.slices)
                )
        rows: list[torch.Tensor] = []
        fed = set(job.feedback)
        for i, s in enumerate(job.slices):
            m = 1 if job.num_logits is None else job.num_logits[i]
            try:
                input_ids, ctx = self.runner.prepare([s])
                if i in fed:
                    self._feed(input_ids, [len(input_ids) - 1], [job.slice_slots[i]])
                rows.append(self.runner.run(input_ids, ctx, [m], self._slice_lora(job, i)))
            except Exception:
                log.exception("forward failed for one slice")
                out.failed_slices.add(i)
                rows.append(torch.zeros(m, self.vocab_size, device=self.device))
        return torch.cat(rows)

    def _slice_lora(self, job: Job, i: int) -> LoRAStep | None:
        if self.lora is None or job.lora_slots is None:
            return None
        return self.lora.batch([job.lora_slots[i]], [len(job.slices[i].token_ids)])

    def _sample(self, job: Job, logits: torch.Tensor, out: DeviceOutput) -> None:
        if job.drafts is not None:
            self._verify(job, logits, out)
            return
        picked = logits[torch.tensor(job.sample_rows, device=logits.device)]
        slots = torch.tensor(job.sample_slots, device=self.device)
        try:
            results = [
                (
                    range(len(job.sample_rows)),
                    sample(picked, slots, self.sampling, job.flags, job.bitmask),
                )
            ]
        except Exception:
            log.exception("batched sampling failed; sampling its rows one by one")
            results = []
            for r in range(len(job.sample_rows)):
                try:
                    mask = None if job.bitmask is None else job.bitmask[r : r + 1]
                    one = sample(
                        picked[r : r + 1].clone(), slots[r : r + 1], self.sampling, job.flags, mask
                    )
                    results.append((range(r, r + 1), one))
                except Exception:
                    log.exception("sampling failed for one row")
                    out.failed_rows.add(r)
        out.tokens = [0] * len(job.sample_rows)
        out.logprobs = [None] * len(job.sample_rows)
        for rows, res in results:
            for r, t in zip(rows, res.tokens.tolist(), strict=True):
                out.tokens[r] = t
            if res.logprob is not None:
                for r, lp in zip(rows, _logprobs(res), strict=True):
                    out.logprobs[r] = lp

    def _verify(self, job: Job, logits: torch.Tensor, out: DeviceOutput) -> None:
        """Speculation: keep each row's accepted drafts and the target's own next token."""
        assert job.drafts is not None
        n = len(job.sample_rows)
        assert job.params is not None
        try:
            verified = verify(
                logits, job.sample_rows, job.drafts, job.sample_slots, job.params, self.sampling,
                self.vocab_size, job.bitmask,
            )  # fmt: skip
        except Exception:
            log.exception("verifying a speculative step failed")
            out.failed_rows.update(range(n))
            return
        out.spec_tokens = verified.tokens
        out.spec_logprobs = [[None] * len(t) for t in verified.tokens]
        for rows, positions, res in verified.results:
            if res.logprob is not None:
                for r, pos, lp in zip(rows, positions, _logprobs(res), strict=True):
                    out.spec_logprobs[r][pos] = lp
        out.tokens = [t[-1] for t in verified.tokens]
        out.logprobs = [lps[-1] for lps in out.spec_logprobs]

    # host, after the device: tokens to deltas

    def _process(self, launched: Launched) -> list[CompletionDelta]:
        out = launched.future.result()
        if self.tiers is not None:
            self.tiers.observe_prefill(launched.batch.num_tokens, out.seconds)
        return self._deltas(launched, out)

    def _deltas(self, launched: Launched, out: DeviceOutput) -> list[CompletionDelta]:
        deltas: list[CompletionDelta] = []
        batch = launched.batch
        if launched.drafts is not None:
            self._rollback(launched, out)
        for i, seq in enumerate(batch.seqs):
            if seq.status is SequenceStatus.FINISHED:
                continue
            if i in out.failed_slices:
                deltas.append(self._fail(seq, "the model forward failed"))
            elif seq.num_preemptions == launched.epochs[i]:
                self.block_manager.cache_full_blocks(seq, launched.ends[i])
        for r, (seq, at) in enumerate(launched.rows):
            if seq.status is SequenceStatus.FINISHED:
                continue  # ended by an earlier token: this row was the wasted slot
            if r in out.failed_rows:
                deltas.append(self._fail(seq, "sampling failed"))
                continue
            if launched.drafts is not None:
                deltas.append(self._append_kept(seq, out.spec_tokens[r], out.spec_logprobs[r]))
                continue
            token = out.tokens[r]
            seq.token_ids[at] = token
            seq.num_pending -= 1
            deltas.append(self._append(seq, at, token, _trim(seq, out.logprobs[r])))
        return deltas

    def _rollback(self, launched: Launched, out: DeviceOutput) -> None:
        """Speculation, before anything is cached: drop every row's placeholder and
        drafts; the rejected drafts' K/V no longer counts as computed."""
        assert self.spec is not None and launched.drafts is not None
        for r, (seq, at) in enumerate(launched.rows):
            if seq.status is SequenceStatus.FINISHED:
                continue
            del seq.token_ids[at:]
            seq.num_pending -= 1
            proposed = len(launched.drafts[r])
            accepted = 0 if r in out.failed_rows else len(out.spec_tokens[r]) - 1
            self.spec.rollback(seq, proposed, accepted)

    def _append_kept(
        self, seq: Sequence, tokens: list[int], lps: list[TokenLogprobs | None]
    ) -> CompletionDelta:
        """A verified row's tokens, one by one through the finish rules, as one delta."""
        delta = None
        for token, lp in zip(tokens, lps, strict=True):
            seq.token_ids.append(token)
            one = self._append(seq, len(seq.token_ids) - 1, token, _trim(seq, lp))
            if delta is None:
                delta = one
            else:
                delta.new_token_ids += one.new_token_ids
                if delta.logprobs is not None and one.logprobs is not None:
                    delta.logprobs += one.logprobs
                delta.finish_reason, delta.stop_token_id = one.finish_reason, one.stop_token_id
            if seq.status is SequenceStatus.FINISHED:
                break
        assert delta is not None
        return delta

    def _append(
        self, seq: Sequence, at: int, token_id: int, lp: TokenLogprobs | None
    ) -> CompletionDelta:
        """Record a sampled token (at index `at`) and apply the finish rules."""
        reason, stop_token = finish_reason(
            seq.params, token_id, at + 1 - seq.num_prompt_tokens, at + 1,
            self.eos_token_ids, self.max_model_len,
        )  # fmt: skip
        if reason is None and seq.constraint is not None:
            if not seq.constraint.accept(token_id):
                return self._fail(seq, "the structured-output constraint rejected a token")
            if seq.constraint.is_terminated():
                reason = "stop"
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
        if seq.status is SequenceStatus.FINISHED:
            return
        if seq.status is SequenceStatus.FORK_PENDING:
            seq.status, seq.finish_reason = SequenceStatus.FINISHED, reason
        else:
            self.scheduler.finish(seq, reason)
        for child in seq.forks:  # the prompt never finished: they prefill on their own
            if child.status is SequenceStatus.FORK_PENDING:
                self.scheduler.add(child)
        seq.forks = []
        self._release_slot(seq)
        if self.lora is not None:
            self.lora.finish(seq)
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
            preemptions_total=self.scheduler.num_preemptions
            + (self.tiers.fallbacks if self.tiers else 0),
            prefix_queries_total=bm.prefix_queries,
            prefix_hits_total=bm.prefix_hits,
            prompt_tokens_computed_total=self.prompt_tokens_computed,
            kv_restored_tokens_total=self.tiers.restored_tokens if self.tiers else 0,
            tier_metrics=self._tier_metrics(),
            **(self.spec.core_stats() if self.spec is not None else {}),
            lora=None
            if self.lora is None
            else self.lora.stats(self.scheduler.running, self.scheduler.waiting),
        )

    def _tier_metrics(self) -> bytes:
        """The tiers' metrics text: fresh when idle, at most every TIER_METRICS_PERIOD_S
        while requests run."""
        if self.tier_registry is None:
            return b""
        now = time.monotonic()
        if not self.has_unfinished() or now - self._tier_text_at >= TIER_METRICS_PERIOD_S:
            self._tier_text, self._tier_text_at = self.tier_registry.render(), now
        return self._tier_text


def _trim(seq: Sequence, lp: TokenLogprobs | None) -> TokenLogprobs | None:
    """A row's logprobs cut to what its request asked for (None if it asked for none)."""
    if seq.params.logprobs is None or lp is None:
        return None
    n = seq.params.logprobs
    lp.top_ids, lp.top_logprobs = lp.top_ids[:n], lp.top_logprobs[:n]
    return lp


def _logprobs(res: SampleResult) -> list[TokenLogprobs]:
    """The batch's logprob tensors as per-row messages: one read-back per tensor."""
    assert res.logprob is not None and res.rank is not None
    picked, ranks, tokens = res.logprob.tolist(), res.rank.tolist(), res.tokens.tolist()
    if res.top_ids is None or res.top_logprobs is None:
        ids: list[list[int]] = [[] for _ in tokens]
        vals: list[list[float]] = [[] for _ in tokens]
    else:
        ids, vals = res.top_ids.tolist(), res.top_logprobs.tolist()
    return [
        TokenLogprobs(t, p, k, i, v)
        for t, p, k, i, v in zip(tokens, picked, ranks, ids, vals, strict=True)
    ]


def finish_reason(
    params: SamplingParams,
    token_id: int,
    num_output_tokens: int,
    num_tokens: int,
    eos_token_ids: frozenset[int],
    max_model_len: int,
) -> tuple[str | None, int | None]:
    """(reason, stop token) once a sequence has token_id as its num_output_tokens-th
    output: a stop token ends it as "stop" (the token is not part of the text), running
    out of max_tokens or context as "length"."""
    if token_id in params.stop_token_ids or (not params.ignore_eos and token_id in eos_token_ids):
        return "stop", token_id
    if num_output_tokens >= params.max_tokens or num_tokens >= max_model_len:
        return "length", None
    return None, None
