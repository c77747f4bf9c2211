"""The LoRA admission rule: never more distinct adapters in a step than slots, and no
adapter starves while others keep arriving."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from infleet.lora.admission import WaitingLoRA, admit_by_adapter


def test_slots_limit_new_adapters_and_base_needs_none():
    waiting = [WaitingLoRA(a) for a in ["a", "c", None, "a", "d", "b"]]
    assert admit_by_adapter(["a", "b", None], waiting, 3) == [True, True, True, True, False, True]


def test_a_starved_request_drains_the_running_adapters():
    waiting = [WaitingLoRA("c", passed_over=16), WaitingLoRA("a"), WaitingLoRA(None)]
    assert admit_by_adapter(["a", "b"], waiting, 2) == [False, False, True]
    # Before the bound, younger requests of running adapters still go ahead.
    waiting[0] = WaitingLoRA("c", passed_over=15)
    assert admit_by_adapter(["a", "b"], waiting, 2) == [False, True, True]


@dataclass
class Request:
    adapter: str | None
    arrival: int
    tokens_left: int
    passed_over: int = 0


def simulate(arrivals: list[tuple[str | None, int]], max_loras: int, max_batch: int):
    """A scheduler loop around the rule: FCFS queue, `max_batch` running at most, one
    token per running request per step; arrivals keep coming for 200 steps."""
    waiting, running, finished, step = [], [], {}, 0
    while step < 5000 and (step < len(arrivals) or waiting or running):
        if step < len(arrivals):
            adapter, length = arrivals[step]
            waiting.append(Request(adapter, step, length))
        allowed = admit_by_adapter(
            [r.adapter for r in running],
            [WaitingLoRA(r.adapter, r.passed_over) for r in waiting],
            max_loras,
        )
        still = []
        for request, ok in zip(waiting, allowed, strict=True):
            if ok and len(running) < max_batch:
                running.append(request)
            else:
                request.passed_over += not ok
                still.append(request)
        waiting = still
        distinct = {r.adapter for r in running} - {None}
        assert len(distinct) <= max_loras
        for r in running:
            r.tokens_left -= 1
        for r in [r for r in running if r.tokens_left <= 0]:
            running.remove(r)
            finished[r.arrival] = step - r.arrival
        step += 1
    return finished


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "c", "d", "e", None]), st.integers(1, 12)),
        min_size=1,
        max_size=200,
    ),
    st.integers(1, 3),
)
def test_every_request_finishes_and_slots_are_never_exceeded(arrivals, max_loras):
    finished = simulate(arrivals, max_loras, max_batch=8)
    assert len(finished) == len(arrivals)


def test_adversarial_stream_does_not_starve_a_third_adapter():
    """Adapters a and b receive a request every step; one request for c arrives early.
    Without the drain (max_passes never reached) c would wait for the whole stream."""
    arrivals = [("c" if step == 3 else "ab"[step % 2], 6) for step in range(400)]
    finished = simulate(arrivals, max_loras=2, max_batch=64)
    assert finished[3] < 60  # it waited for the bound plus one drain, not 400 steps
