"""The load switch: speculate only while verification costs less than it saves.

Cost model (a pure function, so it is tested without an engine). A step's time is
`t(T) = t0 + c*T` for T tokens: t0 is what every step pays whatever its size (reading the
weights, launching kernels), c each token's compute. Their ratio `knee = t0 / c` is how
many tokens a step takes almost for free: large on a GPU at small batch (decode is bound
by weight reads), small on a CPU. With B running sequences, k draft tokens each and a
per-token acceptance rate a, a speculative step yields `E = (1 - a^(k+1)) / (1 - a)`
tokens per sequence (accepted drafts plus the one the target always samples) and costs
`t0 + c*B*(k+1)`; a plain step yields 1 at `t0 + c*B`. Speculate when

    E * (knee + B) > knee + B * (k + 1)

At B = 1 this holds for any useful acceptance; as B grows the right side wins and
speculation switches off (vLLM measures 1.4-1.8x slowdowns when it does not). The
acceptance rate is measured (an exponential average of accepted / proposed over the
steps that speculated); while speculation is off for low acceptance it is retried every
PROBE_EVERY steps, so a change of traffic is noticed. `disable_by_batch_size` (vLLM's
name) is a hard ceiling on top.
"""

from __future__ import annotations

from dataclasses import dataclass

# Tokens a step processes at about the cost of one (t0 / c): measured on the 2-core CPU
# (docs/benchmarks.md) and a conservative GPU figure (decode is weight-bound to ~64 rows).
DEFAULT_KNEE = {"cpu": 6.0, "cuda": 64.0}
PRIOR_ACCEPTANCE = 0.6  # before anything is measured: try speculation
EWMA_WEIGHT = 0.1  # of each step's acceptance in the running estimate
PROBE_EVERY = 32  # steps between retries while acceptance keeps speculation off


def expected_tokens(acceptance: float, k: int) -> float:
    """Tokens a speculative step yields per sequence: 1 + a + a^2 + ... + a^k."""
    a = min(max(acceptance, 0.0), 1.0)
    return float(k + 1) if a >= 1.0 else (1.0 - a ** (k + 1)) / (1.0 - a)


def speculation_pays(batch: int, k: int, acceptance: float, knee: float) -> bool:
    """Whether a step with `batch` running sequences is faster per token speculating."""
    if batch < 1 or k < 1:
        return False
    return expected_tokens(acceptance, k) * (knee + batch) > knee + batch * (k + 1)


@dataclass(slots=True)
class LoadSwitch:
    k: int
    knee: float
    disable_by_batch_size: int | None = None
    acceptance: float = PRIOR_ACCEPTANCE
    steps_off: int = 0
    enabled: bool = True  # the last decision (exported as a gauge)

    def decide(self, batch: int) -> bool:
        if self.disable_by_batch_size is not None and batch > self.disable_by_batch_size:
            self.enabled = False
        elif speculation_pays(batch, self.k, self.acceptance, self.knee):
            self.enabled = True
        else:
            # Off. If it is acceptance (not load) that keeps it off, probe now and then.
            pays_if_accepted = speculation_pays(batch, self.k, PRIOR_ACCEPTANCE, self.knee)
            self.steps_off += 1
            self.enabled = pays_if_accepted and self.steps_off % PROBE_EVERY == 0
        return self.enabled

    def observe(self, proposed: int, accepted: int) -> None:
        if proposed > 0:
            rate = accepted / proposed
            self.acceptance += EWMA_WEIGHT * (rate - self.acceptance)
