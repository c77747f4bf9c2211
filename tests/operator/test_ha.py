"""High availability on the local fleet, with real `infleet operator` processes: two
replicas elect a leader on a Lease; the leader killed mid-reconcile is replaced within the
lease duration + 5 s, with no duplicate or lost child and no status flapping; the standby
wrote nothing and exported no autoscaling decision before it led (the API server's
request log and its /metrics say so). And an API server that stops answering for 30 s:
the operator times out, counts it, backs off, stops leading and clears its decisions, and
converges once the server is back."""

from __future__ import annotations

import copy
import itertools
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from infleet.localplane.store import WatchEvent
from tests.conftest import REPO
from tests.localplane.harness import RunningPlane, fast_config
from tests.operator.operators import Operator, install_crds, lease_holder, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
LEASE_S = 4  # operators.FAST_LEASE
CHILD_KINDS = ("deployments", "services", "configmaps", "poddisruptionbudgets")
DECISIONS = "infleet_autoscaler_desired_replicas"


@pytest.fixture
def plane() -> Iterator[RunningPlane]:
    running = RunningPlane(fast_config(hollow_pods=True))  # pods Ready at once, no process
    install_crds(running)
    yield running
    running.stop()


def service(name: str) -> dict[str, Any]:
    obj = yaml.safe_load((REPO / "examples" / "chat-local.yaml").read_text())
    obj["metadata"] = {"name": name, "namespace": "default"}
    obj["spec"]["router"] = {"enabled": False}  # the engines' children are what is counted
    return obj


def ready_at(plane: RunningPlane, name: str, generation: int) -> dict[str, Any] | None:
    status = plane.get("inferenceservice", name).get("status") or {}
    ready = next((c for c in status.get("conditions", []) if c["type"] == "Ready"), {})
    done = status.get("observedGeneration") == generation and ready.get("status") == "True"
    return status if done else None


def children(plane: RunningPlane, name: str) -> dict[str, list[tuple[str, str]]]:
    selector = f"infleet.io/inferenceservice={name}"
    return {
        kind: sorted(
            (o["metadata"]["name"], o["metadata"]["uid"])
            for o in plane.get(kind, "-l", selector)["items"]
        )
        for kind in CHILD_KINDS
    }


def statuses(plane: RunningPlane, name: str) -> list[dict[str, Any]]:
    """Every status the service is stored with from now on, in order."""
    seen: list[dict[str, Any]] = []

    def listen(event: WatchEvent) -> None:
        if event.key[1] == "inferenceservices" and event.obj["metadata"]["name"] == name:
            seen.append(copy.deepcopy(event.obj.get("status") or {}))

    plane.call(lambda: plane.plane.store.subscribe(listen))
    return seen


def test_the_standby_takes_over_from_a_leader_killed_mid_reconcile(plane):
    faults = plane.plane.server.faults
    log = plane.call(faults.record)
    a = Operator(plane, "op-a")
    b = None
    try:
        wait_for(lambda: lease_holder(plane) == "op-a", 30, "op-a to lead", a)
        b = Operator(plane, "op-b")
        wait_for(b.up, 30, "op-b's /metrics", b)
        plane.apply(service("ha"))
        wait_for(lambda: ready_at(plane, "ha", 1), 60, "generation 1 Ready", a)
        before = children(plane, "ha")
        history = statuses(plane, "ha")
        # Only the leader exports the autoscaler's decisions.
        assert (a.value("infleet_operator_leader"), b.value("infleet_operator_leader")) == (1, 0)
        assert a.metrics().get(DECISIONS) and not b.metrics().get(DECISIONS)

        # op-a gets as far as generation 2's ConfigMap; its first Deployment apply hangs.
        hold = plane.call(
            lambda: faults.hold(
                lambda r: "op-a" in r.user_agent and r.write and "/deployments/" in r.path
            )
        )
        plane.kubectl("patch", "inferenceservice", "ha", "--type=merge",
                      "-p", '{"spec": {"engine": {"args": ["--max-num-seqs=8"]}}}')  # fmt: skip
        wait_for(lambda: hold.held, 30, "op-a to apply a Deployment of generation 2", a)
        killed = time.time()
        a.kill()

        wait_for(lambda: ready_at(plane, "ha", 2), 60, "generation 2 Ready", b)
        b_requests = [r for r in list(log) if "(op-b)" in r.user_agent]
        # kopf's requests carry the replica's name too (its watches), so none escapes this
        assert any(r.query.get("watch") and r.at < killed for r in b_requests)
        b_writes = [r for r in b_requests if r.write]
        assert b_writes and min(r.at for r in b_writes) > killed, "op-b wrote while op-a led"
        assert "/leases/" in b_writes[0].path, b_writes[0]  # its first write takes the lease
        acted = next(r for r in b_writes if "/leases" not in r.path)
        assert acted.at - killed <= LEASE_S + 5, f"op-b acted {acted.at - killed:.1f} s after"
        assert lease_holder(plane) == "op-b"

        assert children(plane, "ha") == before  # the same objects: none duplicated or lost
        dedicated = plane.get("deployment", "ha-dedicated")["spec"]["template"]["spec"]
        assert "--max-num-seqs=8" in dedicated["containers"][0]["args"]
        ready = [next(c for c in s["conditions"] if c["type"] == "Ready") for s in history]
        assert {(c["status"], c["lastTransitionTime"]) for c in ready} == {
            ("True", ready[0]["lastTransitionTime"])
        }  # Ready throughout: no flapping
        generations = [s["observedGeneration"] for s in history]
        assert generations == sorted(generations)
        assert b.value("infleet_operator_leader") == 1 and b.metrics().get(DECISIONS)
    finally:
        plane.call(lambda: [h.release() for h in faults._holds])
        a.stop()
        if b is not None:
            b.stop()


def test_an_api_server_that_stops_answering_for_30_s_is_ridden_out(plane):
    faults = plane.plane.server.faults
    log = plane.call(faults.record)
    # A lease that outlasts a few retries, and requests that time out quickly.
    timings = ("--lease-duration=15", "--renew-deadline=10", "--retry-period=2")
    op = Operator(plane, "op-c", "--api-timeout=0.5", *timings)
    try:
        plane.apply(service("calm"))
        wait_for(lambda: ready_at(plane, "calm", 1), 60, "generation 1 Ready", op)
        assert op.value("infleet_operator_leader") == 1 and op.metrics().get(DECISIONS)

        outage = plane.call(faults.hold)
        started = time.time()
        # A spec change lands meanwhile (written inside the control plane, whose open
        # watch streams keep flowing): the operator sees it and cannot act on it.
        rt = plane.plane.registry.get("infleet.io", "v1alpha1", "inferenceservices")
        patch = {"spec": {"engine": {"args": ["--max-num-seqs=8"]}}}
        plane.call(lambda: plane.plane.api.patch(rt, "default", "calm", "merge", patch, "test"))
        # Unable to renew for the renew deadline, it stops leading and drops its decisions.
        wait_for(lambda: op.value("infleet_operator_leader") == 0, 10 + 6, "op-c to stop", op)
        # Not before its deadline, which counts from its last renewal: up to one retry
        # period (2 s) before the outage began.
        assert time.time() - started >= 10 - 2 - 0.5
        assert not op.metrics().get(DECISIONS)
        time.sleep(max(0.0, started + 30 - time.time()))
        outage.release()
        ended = time.time()

        wait_for(lambda: ready_at(plane, "calm", 2), 60, "generation 2 after the outage", op)
        assert op.value("infleet_operator_leader") == 1 and op.metrics().get(DECISIONS)
        assert op.value("infleet_operator_api_errors_total", reason="timeout") >= 5
        assert op.value("infleet_operator_reconcile_errors_total") >= 3

        silent = [r for r in list(log) if "(op-c)" in r.user_agent and started <= r.at < ended]
        applies = [r.at for r in silent if r.write and "/leases" not in r.path]
        gaps = [b - a for a, b in itertools.pairwise(applies)]
        where = f"apply attempts at {[round(t - started, 1) for t in applies]} s"
        # Retried with a growing delay while it led: without backoff, 0.5 s timeouts
        # would have made ~20 attempts in those 10 s.
        assert 3 <= len(applies) <= 8 and gaps[-1] >= 2 * gaps[0], where
        # And the lease was tried ever less often (a fixed 2 s period: 12 tries in 30 s).
        leases = [round(r.at - started, 1) for r in silent if "/leases" in r.path]
        assert len(leases) <= 9, leases
    finally:
        op.stop()
