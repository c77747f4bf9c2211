"""The engine core's speculation hooks, host side: drafts in, rejected drafts out.

A step with speculation (engine/core/engine_core.py calls these in order):

1. `before_schedule(running)`: the load switch decides for the running batch; each
   decoding sequence gets up to k draft tokens appended to its token ids (the n-gram
   proposer's tokens, or placeholders the draft model fills after scheduling). The
   scheduler then sees 1 + d uncomputed tokens and schedules them like a prefill chunk:
   one budget, one batched target forward for every running sequence.
2. `after_schedule(batch)`: drafts the budget did not cover (a chunk cut short, a
   sequence left out or preempted) are dropped, then the draft model, if any, fills the
   rest. The target computes logits at every one of the 1 + d positions.
3. After the forward, engine/spec/verify.py keeps the accepted drafts plus one token
   the target sampled; `rollback(seq, proposed, accepted)` removes the rejected drafts from the
   token ids and un-counts their K/V. Their slots are simply overwritten later; blocks
   the sequence grew for them stay in its table for its next tokens, and blocks enter the
   prefix cache only up to the computed (accepted) tokens.

Drafts are never longer than what the request may still generate (max_tokens, context),
so accepting all of them plus the bonus token never overshoots.
"""

from __future__ import annotations

import logging

from infleet.engine.core.scheduler import ScheduledBatch
from infleet.engine.core.sequence import Sequence
from infleet.engine.spec.config import SpeculativeConfig
from infleet.engine.spec.ngram import propose_ngram
from infleet.engine.spec.switch import DEFAULT_KNEE, LoadSwitch

log = logging.getLogger("infleet.engine")


class SpecStats:
    """Running totals with vLLM's meanings (exported as infleet:spec_decode_*)."""

    def __init__(self, k: int) -> None:
        self.num_drafts = 0  # sequences that carried drafts into a verification
        self.num_draft_tokens = 0
        self.num_accepted_tokens = 0
        self.accepted_per_pos = [0] * k
        self.num_target_forwards = 0  # engine steps that ran the target (for tests, bench)


class SpecDecoder:
    def __init__(self, config: SpeculativeConfig, device_type: str, drafter=None) -> None:
        self.config = config
        self.k = config.num_speculative_tokens
        self.switch = LoadSwitch(
            self.k, DEFAULT_KNEE.get(device_type, DEFAULT_KNEE["cuda"]),
            config.disable_by_batch_size, 0.0 if drafter is None else drafter.cost,
        )  # fmt: skip
        self.drafter = drafter  # engine/spec/draft.py for draft_model / self_draft; None: ngram
        self.stats = SpecStats(self.k)

    def core_stats(self) -> dict[str, object]:
        """CoreStats fields (engine/messages.py)."""
        s = self.stats
        return dict(
            spec_enabled=int(self.switch.enabled),
            spec_num_drafts_total=s.num_drafts,
            spec_num_draft_tokens_total=s.num_draft_tokens,
            spec_num_accepted_tokens_total=s.num_accepted_tokens,
            spec_num_accepted_tokens_per_pos_total=list(s.accepted_per_pos),
        )

    def before_schedule(self, running: list[Sequence], max_model_len: int) -> None:
        k = self.switch.decide(len(running)) if running else 0
        if k == 0:
            return
        c = self.config
        for seq in running:
            if seq.num_uncomputed_tokens != 1 or seq.num_output_tokens < 1:
                continue  # still prefilling (or only its prompt's last token is left)
            if seq.constraint is not None or seq.num_pending:
                continue  # a grammar must see each token before the next mask
            room = min(
                k,
                seq.params.max_tokens - seq.num_output_tokens - 1,
                max_model_len - seq.num_tokens - 1,
            )
            if room < 1:
                continue
            if self.drafter is None:
                drafts = propose_ngram(
                    seq.token_ids, room, c.prompt_lookup_min, c.prompt_lookup_max
                )
            else:
                drafts = [0] * room  # placeholders: the draft model fills them after scheduling
            seq.token_ids += drafts
            seq.num_spec_tokens = len(drafts)

    def after_schedule(self, batch: ScheduledBatch, running: list[Sequence]) -> None:
        for seq in batch.preempted:
            strip(seq, seq.num_spec_tokens)
        scheduled = dict(zip(batch.seqs, batch.num_new_tokens, strict=True))
        for seq in running:
            if seq.num_spec_tokens:
                n = scheduled.get(seq, 0)
                strip(seq, seq.num_spec_tokens - max(0, n - 1))
        if self.drafter is not None:
            self.drafter.fill([s for s in batch.seqs if s.num_spec_tokens])

    def rollback(self, seq: Sequence, proposed: int, accepted: int) -> None:
        """After verification: of `proposed` drafts the first `accepted` stood. Drops the
        drafts from the token ids (the caller appends the kept tokens, which checks each
        against the finish rules) and un-counts the rejected ones' K/V."""
        del seq.token_ids[len(seq.token_ids) - proposed :]
        seq.num_computed_tokens -= proposed - accepted
        seq.num_spec_tokens = 0
        if proposed == 0:
            return
        s = self.stats
        s.num_drafts += 1
        s.num_draft_tokens += proposed
        s.num_accepted_tokens += accepted
        for pos in range(accepted):
            s.accepted_per_pos[pos] += 1
        self.switch.observe(proposed, accepted)


def strip(seq: Sequence, n: int) -> None:
    """Drop seq's last n draft tokens (never computed)."""
    if n > 0:
        del seq.token_ids[-n:]
        seq.num_spec_tokens -= n
