"""Pipeline parallelism: one step's forward through the stages, micro-batch by micro-batch.

Every rank runs `run_pipelined` on the step rank 0 broadcast (engine/distributed/launch.py).
The step's sequences are cut into micro-batches by the scheduler's rule
(`engine/core/scheduler.py: micro_batches`, the same on every rank). Stage s takes
micro-batch m's hidden state and residual from stage s-1 (the first stage embeds), runs its
layers and sends both on without waiting (`isend`); the last stage sends the logits of each
sequence's last token to rank 0. So the first stage starts micro-batch m+1 while later
stages still work on m: with two micro-batches and two stages, both stages compute at once
for a third of the step, and a stage idles a third of it instead of half.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from infleet.engine.attention import AttentionContext, reset_context, set_context
from infleet.engine.distributed.state import pp


@dataclass(slots=True)
class PipelineTrace:
    """Rank 0's record of the micro-batches it has started and finished, in order: the
    evidence that more than one is in flight at once (asserted by order in the tests)."""

    events: list[tuple[str, int]] = field(default_factory=list)  # ("start"|"done", index)
    max_in_flight: int = 0

    def start(self, index: int) -> None:
        self.events.append(("start", index))
        started = sum(1 for kind, _ in self.events if kind == "start")
        done = sum(1 for kind, _ in self.events if kind == "done")
        self.max_in_flight = max(self.max_in_flight, started - done)

    def done(self, index: int) -> None:
        self.events.append(("done", index))


def slice_step(
    input_ids: torch.Tensor, ctx: AttentionContext, first: int, end: int
) -> tuple[torch.Tensor, AttentionContext]:
    """Sequences [first, end) of a prepared step as a step of their own."""
    cu = ctx.cu_seqlens_q
    lo, hi = int(sum(ctx.query_lens_host[:first])), int(sum(ctx.query_lens_host[:end]))
    part = AttentionContext(
        cu_seqlens_q=cu[first : end + 1] - cu[first],
        context_lens=ctx.context_lens[first:end],
        block_tables=ctx.block_tables[first:end],
        slot_mapping=ctx.slot_mapping[lo:hi],
        positions=ctx.positions[lo:hi],
        block_size=ctx.block_size,
        query_lens_host=ctx.query_lens_host[first:end],
        context_lens_host=ctx.context_lens_host[first:end],
    )
    return input_ids[lo:hi], part


def run_pipelined(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    ctx: AttentionContext,
    bounds: list[tuple[int, int]],
    trace: PipelineTrace | None = None,
) -> torch.Tensor | None:
    """This rank's stage of one step; rank 0 (the first stage) returns the float32 logits
    `[num_seqs, vocab]` at each sequence's last token, other stages None."""
    stage = pp()
    hidden_size = model.config.hidden_size
    device, dtype = input_ids.device, next(model.parameters()).dtype
    sends: list[tuple[object, torch.Tensor]] = []  # kept alive until sent
    for m, (first, end) in enumerate(bounds):
        ids, part = slice_step(input_ids, ctx, first, end)
        set_context(part)
        try:
            if stage.first:
                if trace is not None:
                    trace.start(m)
                x, residual = model.model.embed_tokens(ids), None
            else:
                carried = torch.empty(2, len(ids), hidden_size, dtype=dtype, device=device)
                dist.recv(carried, src=stage.rank - 1)
                x, residual = carried[0], carried[1]
            x, residual = model.forward_layers(part.positions, x, residual)
            if stage.last:
                hidden = model.model.norm(x, residual)[0]
                last = part.cu_seqlens_q[1:].long() - 1
                logits = model.compute_logits(hidden.index_select(0, last)).float()
                out = logits.contiguous()
                sends.append((dist.isend(out, dst=0), out))
            else:
                out = torch.stack([x, residual])
                sends.append((dist.isend(out, dst=stage.rank + 1), out))
        finally:
            reset_context()
    logits = None
    if stage.first:
        rows = []
        for m, (first, end) in enumerate(bounds):
            out = torch.empty(end - first, model.config.vocab_size, device=device)
            dist.recv(out, src=stage.size - 1)
            if trace is not None:
                trace.done(m)
            rows.append(out)
        logits = torch.cat(rows)
    for work, _ in sends:
        work.wait()  # type: ignore[attr-defined]
    return logits
