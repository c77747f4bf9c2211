"""The load switch: speculate only while verification costs less than it saves, and
with as many drafts as pay.

Cost model (pure functions, tested without an engine). A step's time is `t(T) = t0 + c*T`
for T tokens: t0 is what every step pays whatever its size (reading the weights,
launching kernels), c each token's compute. Their ratio `knee = t0 / c` is how many
tokens a step takes almost for free: large on a GPU at small batch (decode is bound by
weight reads), small on a CPU (measured: docs/benchmarks.md). With B running sequences,
d drafts each and a per-position acceptance probability a, a speculative step yields
`E = 1 + a + ... + a^d` tokens per sequence (accepted drafts plus the one the target
always samples) and costs `t0 + c*B*(d+1)`; a plain step yields 1 at `t0 + c*B`. A draft
model adds d draft steps, each `draft_cost` of a plain step (0 for n-gram lookup, K/L for
self-draft, the parameter ratio for a draft model). The speed-up with d drafts is

    gain(d) = E(a, d) * (knee + B) / (knee + B * (d + 1) + d * draft_cost * (knee + B))

and the switch picks the d in 1..k with the largest gain, or none (off) when no gain
exceeds 1. At B = 1 speculation pays for any useful acceptance; as B grows the
denominator wins and it switches off (vLLM measures 1.4-1.8x slowdowns when it does not).
The acceptance a is measured: accepted drafts over draft positions tried (a row's trials
end at its first rejection), in exponentially decaying sums over the rows that
speculated; while acceptance alone keeps speculation off it is retried every PROBE_EVERY
steps, so a change of traffic is noticed. `disable_by_batch_size` (vLLM's name) is a
hard ceiling on top.
"""

from __future__ import annotations

from dataclasses import dataclass

# Tokens a step processes at about the cost of one (t0 / c): measured on the 2-core CPU
# (docs/benchmarks.md) and a conservative GPU figure (decode is weight-bound to ~64 rows).
DEFAULT_KNEE = {"cpu": 6.0, "cuda": 64.0}
PRIOR_ACCEPTANCE = 0.6  # before anything is measured: try speculation
PRIOR_WEIGHT = 4.0  # draft positions the prior counts for
DECAY = 0.99  # per verified row: the estimate follows about the last hundred rows
PROBE_EVERY = 32  # steps between retries while acceptance keeps speculation off


def expected_tokens(acceptance: float, d: int) -> float:
    """Tokens a speculative step yields per sequence: 1 + a + a^2 + ... + a^d."""
    a = min(max(acceptance, 0.0), 1.0)
    return float(d + 1) if a >= 1.0 else (1.0 - a ** (d + 1)) / (1.0 - a)


def gain(batch: int, d: int, acceptance: float, knee: float, draft_cost: float = 0.0) -> float:
    """Speed-up of a step with `batch` sequences speculating d drafts each over a plain one."""
    plain = knee + batch
    return (
        expected_tokens(acceptance, d) * plain / (knee + batch * (d + 1) + d * draft_cost * plain)
    )


def best_draft_len(
    batch: int, k: int, acceptance: float, knee: float, draft_cost: float = 0.0
) -> int:
    """The number of drafts (0..k) that makes a step fastest per token; 0: do not speculate."""
    if batch < 1:
        return 0
    best, best_gain = 0, 1.0
    for d in range(1, k + 1):
        g = gain(batch, d, acceptance, knee, draft_cost)
        if g > best_gain:
            best, best_gain = d, g
    return best


@dataclass(slots=True)
class LoadSwitch:
    k: int
    knee: float
    disable_by_batch_size: int | None = None
    draft_cost: float = 0.0  # one draft step, as a fraction of a plain target step
    accepted: float = PRIOR_ACCEPTANCE * PRIOR_WEIGHT  # decaying sums (see the docstring)
    trials: float = PRIOR_WEIGHT
    steps_off: int = 0
    draft_len: int = 0  # the last decision: drafts per sequence, 0 = off

    @property
    def acceptance(self) -> float:
        return self.accepted / self.trials

    @property
    def enabled(self) -> bool:
        return self.draft_len > 0

    def decide(self, batch: int) -> int:
        """Drafts per sequence for a step with `batch` running sequences (0: none)."""
        if self.disable_by_batch_size is not None and batch > self.disable_by_batch_size:
            self.draft_len = 0
            return 0
        self.draft_len = best_draft_len(batch, self.k, self.acceptance, self.knee, self.draft_cost)
        if self.draft_len == 0:
            # Off. If it is acceptance (not load) that keeps it off, probe now and then.
            self.steps_off += 1
            if self.steps_off % PROBE_EVERY == 0:
                self.draft_len = best_draft_len(
                    batch, self.k, PRIOR_ACCEPTANCE, self.knee, self.draft_cost
                )
        return self.draft_len

    def observe(self, proposed: int, accepted: int) -> None:
        """One row's verification: `accepted` of its `proposed` drafts stood."""
        if proposed > 0:
            trials = accepted + (1 if accepted < proposed else 0)
            self.accepted = self.accepted * DECAY + accepted
            self.trials = self.trials * DECAY + trials
