"""A cohort: requests that travel together through a replica.

Members are evenly spaced: member i arrived at `a + i*g` (its latency clock) and may
start prefill here at `r + i*h` (equal to its arrival for fresh requests; all at once,
h=0, for retries and preempted requests). Once prefilled, member i's time to first token
is `ttft0 + i*ttft_step`; it counts only when the request completes, so a request cut
by an interruption and retried counts once, with the TTFT of the attempt that finished.
"""

from __future__ import annotations


class Cohort:
    __slots__ = (
        "a",
        "attempts",
        "dead",
        "first_token_at",
        "g",
        "h",
        "n",
        "o",
        "o0",
        "p",
        "p0",
        "r",
        "ttft0",
        "ttft_done",
        "ttft_step",
        "v0",
    )

    def __init__(
        self,
        a: float,
        g: float,
        r: float,
        h: float,
        n: int,
        p: float,
        o: float,
        attempts: int = 0,
    ) -> None:
        self.a, self.g, self.r, self.h, self.n = a, g, r, h, n
        self.p = self.p0 = p  # prompt tokens per member (to prefill here)
        self.o = self.o0 = o  # output tokens per member (still to generate)
        self.attempts = attempts
        self.ttft_done = False  # first token delivered (kept through a preemption)
        self.ttft0 = self.ttft_step = 0.0
        self.first_token_at = 0.0  # when the middle member got its first token
        self.dead = False  # finished, preempted or moved: ignore stale heap entries
        self.v0 = 0.0  # the replica's decode clock when the cohort joined the batch

    def split(self, k: int) -> Cohort:
        """Detach and return the first k members; self keeps the rest."""
        head = Cohort(self.a, self.g, self.r, self.h, k, self.p, self.o, self.attempts)
        head.p0, head.o0, head.ttft_done = self.p0, self.o0, self.ttft_done
        head.ttft0, head.ttft_step, head.v0 = self.ttft0, self.ttft_step, self.v0
        head.first_token_at = self.first_token_at
        self.ttft0 += k * self.ttft_step
        self.a += k * self.g
        self.r += k * self.h
        self.n -= k
        return head

    def retry(self, now: float) -> Cohort:
        """The same requests sent again from scratch (their KV and stream are lost)."""
        return Cohort(self.a, self.g, now, 0.0, self.n, self.p0, self.o0, self.attempts + 1)
