"""ParentQueue: one reconcile or refresh of a service at a time, child events coalesced."""

import threading
import time

import pytest

from infleet.operator.parents import ParentQueue

KEY = ("ns", "chat")


def test_events_during_a_refresh_are_handled_together_after_it() -> None:
    queue, batches = ParentQueue(), []
    release, first_started = threading.Event(), threading.Event()

    def refresh(batch):
        batches.append(batch)
        if len(batches) == 1:
            first_started.set()
            release.wait(5)

    queue.add(KEY, ("Deployment", "chat-spot"), {"v": 1})
    first = threading.Thread(target=queue.drain, args=(KEY, refresh))
    first.start()
    assert first_started.wait(5)
    for version in (2, 3):  # newer events while the first refresh runs
        queue.add(KEY, ("Deployment", "chat-dedicated"), {"v": version})
        queue.drain(KEY, refresh)  # returns at once: the running drainer takes them
    queue.add(KEY, ("Service", "chat"), None)
    queue.drain(KEY, refresh)
    release.set()
    first.join(5)
    assert batches == [
        {("Deployment", "chat-spot"): {"v": 1}},
        {("Deployment", "chat-dedicated"): {"v": 3}, ("Service", "chat"): None},
    ]


def test_a_refresh_waits_for_a_reconcile_holding_the_service() -> None:
    queue, order = ParentQueue(), []
    queue.add(KEY, ("ConfigMap", "chat-engine"), {})
    with queue.holding(KEY):
        drainer = threading.Thread(
            target=queue.drain, args=(KEY, lambda b: order.append("refresh"))
        )
        drainer.start()
        time.sleep(0.2)
        order.append("reconcile done")
    drainer.join(5)
    assert order == ["reconcile done", "refresh"]


def test_a_failed_refresh_keeps_its_events_for_the_next_one() -> None:
    queue = ParentQueue()
    queue.add(KEY, ("Deployment", "chat-spot"), {"v": 1})

    def broken(batch):
        queue.add(KEY, ("Deployment", "chat-spot"), {"v": 2})  # newer, arrives meanwhile
        raise RuntimeError("API server down")

    with pytest.raises(RuntimeError):
        queue.drain(KEY, broken)
    seen = []
    queue.drain(KEY, seen.append)
    assert seen == [{("Deployment", "chat-spot"): {"v": 2}}]


def test_known_bodies_drop_managed_fields_and_are_forgotten_with_the_service() -> None:
    queue = ParentQueue()
    queue.remember(KEY, {"metadata": {"name": "chat", "managedFields": [{"manager": "x"}]}})
    assert queue.known(KEY) == {"metadata": {"name": "chat"}}
    queue.remember(KEY, None)  # gone
    assert queue.known(KEY) is None
    queue.remember(KEY, {"metadata": {"name": "chat"}})
    queue.forget(KEY)
    assert queue.known(KEY) is None
