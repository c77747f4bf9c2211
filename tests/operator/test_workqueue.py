"""The work queue: a key queued once however often added, never handed to two workers at
once, queued again when added while held, delayed adds, per-key doubling backoff."""

from __future__ import annotations

import threading

from infleet.operator.workqueue import WorkQueue


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_key_added_many_times_is_queued_once():
    queue: WorkQueue[str] = WorkQueue()
    for key in ("a", "b", "a", "a"):
        queue.add(key)
    assert len(queue) == 2
    assert [queue.get(0), queue.get(0), queue.get(0)] == ["a", "b", None]


def test_a_held_key_is_not_handed_out_again_until_done_then_is_requeued():
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    assert queue.get(0) == "a"
    queue.add("a")  # an event while a worker reconciles it
    assert queue.get(0) is None  # no second worker on the same key
    queue.done("a")
    assert queue.get(0) == "a"  # the event is not lost
    queue.done("a")
    assert queue.get(0) is None


def test_backoff_doubles_per_failure_up_to_the_cap_and_forget_resets_it():
    clock = Clock()
    queue: WorkQueue[str] = WorkQueue(base_delay=0.5, max_delay=3.0, clock=clock)
    assert [queue.backoff("a") for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert queue.failing("a")
    queue.forget("a")
    assert not queue.failing("a") and queue.backoff("a") == 0.5


def test_a_delayed_key_comes_out_when_due():
    clock = Clock()
    queue: WorkQueue[str] = WorkQueue(clock=clock)
    queue.add_after("a", 2.0)
    assert queue.get(0) is None
    clock.now = 2.0
    assert queue.get(0) == "a"


def test_a_waiting_worker_wakes_for_a_new_key():
    queue: WorkQueue[str] = WorkQueue()
    got: list[str | None] = []
    worker = threading.Thread(target=lambda: got.append(queue.get(5)))
    worker.start()
    queue.add("a")
    worker.join(5)
    assert got == ["a"]
