"""Leader election: who may take the lease (pure), and electors on a real API server's
Lease: one leader at a time, a silent leader fenced off before its lease can pass on, a
released lease taken at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from infleet.operator.kube import Kube, NotLeader, load_config
from infleet.operator.leader import Elector, LeaseTiming, claim
from infleet.operator.lease import LeaseApi, LeaseRecord
from tests.operator.plane import running_plane

HELD = LeaseRecord("op-a", 15, "t0", "t1", 3, "41")


def test_a_running_lease_of_another_holder_is_not_taken_before_its_duration():
    assert claim(HELD, "op-b", observed_at=100.0, now=114.9, wall=0, duration_s=15) is None
    taken = claim(HELD, "op-b", observed_at=100.0, now=115.0, wall=0, duration_s=15)
    assert taken is not None
    assert (taken.holder, taken.transitions, taken.version) == ("op-b", 4, "41")
    assert taken.acquired == taken.renewed  # a new term starts now


def test_the_holder_renews_keeping_its_acquire_time_and_a_released_lease_is_free():
    renewed = claim(HELD, "op-a", observed_at=100.0, now=101.0, wall=0, duration_s=15)
    assert renewed is not None and (renewed.acquired, renewed.transitions) == ("t0", 3)
    released = LeaseRecord("", 1, "t0", "t2", 3, "42")
    assert claim(released, "op-b", observed_at=100.0, now=100.0, wall=0, duration_s=15)


@pytest.mark.parametrize(
    ("timing", "flag"),
    [
        (LeaseTiming(10, 10, 2), "--lease-duration must be longer than --renew-deadline"),
        (LeaseTiming(15, 2, 2), "--renew-deadline must be longer than 1.2 x --retry-period"),
    ],
)
def test_timings_that_could_elect_two_leaders_are_refused_naming_the_flag(timing, flag):
    assert timing.problem() == flag
    assert LeaseTiming().problem() is None


class Candidate:
    """An elector in a thread of its own, recording when it led and when it stopped."""

    def __init__(self, kubeconfig: str, identity: str, timing: LeaseTiming) -> None:
        kube = Kube(load_config(kubeconfig), identity=identity, timeout=timing.api_timeout_s)
        self.events: list[tuple[str, float]] = []
        self.elector = Elector(
            LeaseApi(kube, "default", "test-lease"),
            identity,
            timing,
            on_lead=lambda: self.events.append(("lead", time.monotonic())),
            on_follow=lambda: self.events.append(("follow", time.monotonic())),
        )
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.elector.run, args=(self.stop,), daemon=True)
        self.thread.start()

    def halt(self) -> None:
        self.stop.set()
        self.thread.join(5)


@pytest.fixture(scope="module")
def kubeconfig(tmp_path_factory) -> Iterator[str]:
    with running_plane(tmp_path_factory.mktemp("plane")) as path:
        yield str(path)


def wait(check, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_one_leader_a_silent_one_fenced_before_the_other_takes_over_and_release(kubeconfig):
    timing = LeaseTiming(duration_s=2.0, renew_deadline_s=1.5, retry_period_s=0.4, api_timeout_s=1)
    a = Candidate(kubeconfig, "op-a", timing)
    wait(a.elector.leading, 5)
    b = Candidate(kubeconfig, "op-b", timing)
    time.sleep(2 * timing.duration_s)
    assert a.elector.leading() and not b.elector.leading()
    with pytest.raises(NotLeader):
        b.elector.fence()

    a.halt()  # silent: stops renewing, releases nothing
    silenced = time.monotonic()
    wait(b.elector.leading, 3 * timing.duration_s)
    took_over = time.monotonic()
    with pytest.raises(NotLeader):  # fenced off by its own clock, before b could take over
        a.elector.fence()
    assert took_over - silenced >= timing.duration_s - timing.retry_period_s

    c = Candidate(kubeconfig, "op-c", timing)
    time.sleep(timing.retry_period_s * 2)
    b.halt()
    released = time.monotonic()
    b.elector.release()  # shutting down: the lease is handed over at once
    assert b.events[-1][0] == "follow"
    wait(c.elector.leading, timing.duration_s)
    assert time.monotonic() - released < timing.duration_s  # sooner than an expiry
    c.halt()
