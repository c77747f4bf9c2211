"""Draft-model proposals: a small model (`draft_model`) or the target's first K layers
(`self_draft`) guesses the next k tokens greedily, batched over the sequences.

The draft's K/V lives at the same block ids as the target's (the sequences' own block
tables; the scheduler has already grown them for the drafts):

- `draft_model` has its own pool of the same number of blocks in its own shape. Each
  sequence's draft K/V is valid up to a position the drafter remembers, clamped to what
  the target has computed (a rejected draft's K/V is stale) and reset by a preemption;
  the first draft of a sequence computes its whole context once (catch-up), later ones
  only what is new.
- `self_draft` shares the target's layers and so its cache: the target's K/V of layers
  below K is exactly what the draft would compute, so the draft starts at the last sampled
  token. It writes the draft positions of those layers, which the verification forward
  rewrites in the same step.

The draft distribution is one-hot (argmax), which is what engine/spec/verify.py assumes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from infleet.engine.args import EngineArgs
from infleet.engine.attention import reset_context, set_context
from infleet.engine.core.runner import ModelRunner, SeqSlice
from infleet.engine.core.sequence import Sequence
from infleet.engine.loader import LoadedModel, load_model
from infleet.engine.models.decoder import CausalLM
from infleet.engine.spec.config import SpeculativeConfig, SpeculativeConfigError

Forward = Callable[[list[SeqSlice]], torch.Tensor]  # slices -> logits at each last token


class ModelDrafter:
    def __init__(
        self, forward: Forward, vocab_size: int, shares_target_kv: bool, cost: float
    ) -> None:
        self.forward = forward
        self.cost = cost  # one draft step as a fraction of a target step (the load switch)
        self.vocab_size = vocab_size  # tokens the target knows (the draft may pad more)
        self.shares_target_kv = shares_target_kv
        self.valid: dict[Sequence, tuple[int, int]] = {}  # seq -> (preemptions, K/V upto)
        self.num_forwards = 0

    def _start(self, seq: Sequence, first_draft: int) -> int:
        """Where this draft step starts computing: the last sampled token is at
        first_draft - 1 and never has draft K/V yet."""
        if self.shares_target_kv:
            return first_draft - 1
        epoch, upto = self.valid.get(seq, (seq.num_preemptions, 0))
        if epoch != seq.num_preemptions:
            upto = 0
        return min(upto, seq.num_computed_tokens, first_draft - 1)

    @torch.inference_mode()
    def fill(self, seqs: list[Sequence]) -> None:
        """Replace each sequence's trailing num_spec_tokens placeholders by draft tokens."""
        for seq in [s for s in self.valid if s.is_finished]:
            del self.valid[seq]
        if not seqs:
            return
        firsts = [s.num_tokens - s.num_spec_tokens for s in seqs]
        slices = []
        for seq, first in zip(seqs, firsts, strict=True):
            start = self._start(seq, first)
            slices.append(SeqSlice(seq.token_ids[start:first], start, seq.block_table))
        active = list(range(len(seqs)))
        j = 0
        while active:
            logits = self.forward(slices)
            self.num_forwards += 1
            tokens = logits[:, : self.vocab_size].argmax(dim=-1).tolist()
            still, slices = [], []
            for r, t in zip(active, tokens, strict=True):
                seq, at = seqs[r], firsts[r] + j
                seq.token_ids[at] = t
                if j + 1 < seq.num_spec_tokens:
                    still.append(r)
                    slices.append(SeqSlice([t], at, seq.block_table))
                else:
                    self.valid[seq] = (seq.num_preemptions, at)  # K/V computed below `at`
            active = still
            j += 1


class _FirstLayers:
    """The target's first K layers, its final norm and LM head: a draft that costs K/L."""

    def __init__(self, model: CausalLM, num_layers: int) -> None:
        self.model, self.layers = model, model.model.layers[:num_layers]

    def __call__(self, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        x, residual = self.model.model.embed_tokens(input_ids), None
        for layer in self.layers:
            x, residual = layer(positions, x, residual)
        return self.model.model.norm(x, residual)[0]


def _self_draft_forward(runner: ModelRunner, first: _FirstLayers) -> Forward:
    def forward(slices: list[SeqSlice]) -> torch.Tensor:
        input_ids, ctx = runner.prepare(slices)
        set_context(ctx)
        try:
            hidden = first(input_ids, ctx.positions)
            last = ctx.cu_seqlens_q[1:].long() - 1
            return first.model.compute_logits(hidden.index_select(0, last)).float()
        finally:
            reset_context()

    return forward


def check_same_tokenizer(target: LoadedModel, draft: LoadedModel) -> None:
    t, d = target.tokenizer.backend.get_vocab(), draft.tokenizer.backend.get_vocab()
    if t != d:
        differ = sorted(set(t.items()) ^ set(d.items()))[:3]
        raise SpeculativeConfigError(
            "model",
            f"the draft model's tokenizer differs from the target's ({len(d)} vs {len(t)} "
            f"tokens; e.g. {differ}): a draft must share the target's vocabulary",
        )


def build_drafter(
    config: SpeculativeConfig, args: EngineArgs, target: LoadedModel, runner: ModelRunner
) -> ModelDrafter:
    vocab = target.config.vocab_size
    if config.method == "self_draft":
        layers = target.config.num_layers
        if config.num_layers >= layers:
            raise SpeculativeConfigError(
                "num_layers", f"must be below the target's {layers} layers, got {config.num_layers}"
            )
        first = _FirstLayers(target.model, config.num_layers)
        return ModelDrafter(
            _self_draft_forward(runner, first), vocab, shares_target_kv=True,
            cost=config.num_layers / layers,
        )  # fmt: skip
    assert config.model is not None
    draft = load_model(config.model, device=args.device, dtype=args.dtype)
    check_same_tokenizer(target, draft)
    draft_runner = ModelRunner(
        draft, num_blocks=runner.num_blocks, block_size=runner.block_size,
        attention_backend=args.attention_backend, cuda_graph_max_batch=0,
    )  # fmt: skip
    cost = _num_params(draft.model) / _num_params(target.model)
    return ModelDrafter(draft_runner.forward, vocab, shares_target_kv=False, cost=cost)


def _num_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
