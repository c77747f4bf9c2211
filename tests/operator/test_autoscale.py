"""The reconcile's autoscale step against an emulated API server: engines scraped over real
HTTP through the ScrapePool, the decision, the MetricsUnavailable condition and the failure
counters, the cold start from the Deployments, and the policy's memory in its owned
ConfigMap across an operator restart (and a broken one: a cold start, logged)."""

from __future__ import annotations

import json
import logging

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from infleet.autoscaler.exporter import AutoscalerMetrics
from infleet.autoscaler.scrape import ScrapeLimits, ScrapePool
from infleet.autoscaler.state import restore
from infleet.operator.autoscale import Autoscaler, rfc3339
from infleet.operator.autoscale_state import STATE_KEY
from infleet.operator.kube import Kube, load_config
from infleet.operator.names import autoscaler_state_name
from infleet.operator.reconcile import reconcile
from infleet.operator.render import RenderOptions
from tests.autoscaler.live_servers import free_port
from tests.autoscaler.test_timer import T0, pod
from tests.operator.plane import running_plane, snapshot
from tests.operator.test_localplane import GVP, create

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with running_plane(tmp_path_factory.mktemp("plane")) as kubeconfig:
        yield kubeconfig, load_config(str(kubeconfig))


@pytest.fixture(scope="module")
def engine():
    """An engine's /metrics (our names): 2 waiting, 3 running, 40 requests finished."""
    registry = CollectorRegistry()
    Gauge("infleet:num_requests_waiting", "", registry=registry).set(2)
    Gauge("infleet:num_requests_running", "", registry=registry).set(3)
    Counter("infleet:request_success", "", registry=registry).inc(40)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    yield server.server_port
    server.shutdown()
    server.server_close()
    thread.join(5)


def engine_pod(name: str, pool: str, port: int, service: str) -> dict:
    p = pod(name, pool, ip="127.0.0.1")
    p["metadata"]["labels"]["infleet.io/inferenceservice"] = service
    p["spec"]["containers"][0]["ports"][0]["containerPort"] = port
    return p


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def autoscaler(clock: Clock, registry: CollectorRegistry | None = None) -> Autoscaler:
    pool = ScrapePool(ScrapeLimits(timeout_s=1.0, deadline_s=3.0))
    metrics = AutoscalerMetrics(registry or CollectorRegistry())
    return Autoscaler(clock=clock, metrics=metrics, pool=pool)


def tick(api_client, name: str, scaler: Autoscaler, pods: list[dict]):
    snap = snapshot(api_client, "default", name)
    snap = type(snap)(snap.parent, snap.children, pods)
    return reconcile(snap, Kube(api_client), RenderOptions(), scaler)


def condition(status: dict) -> dict:
    return next(c for c in status["conditions"] if c["type"] == "MetricsUnavailable")


def state_config_map(api_client, name: str) -> dict:
    from kubernetes import client

    return client.CoreV1Api(api_client).read_namespaced_config_map(
        autoscaler_state_name(name), "default"
    )


def test_a_decision_writes_status_condition_and_its_state_and_a_restart_resumes(api, engine):
    api_client = api[1]
    service = create(api_client, "scaled")
    pods = [engine_pod("scaled-dedicated-a", "dedicated", engine, "scaled")]
    pods.append(engine_pod("scaled-spot-a", "spot", engine, "scaled"))
    clock = Clock()
    scaler = autoscaler(clock)
    for i in range(4):
        clock.now = T0 + 10 * i
        outcome = tick(api_client, "scaled", scaler, pods)
    live = outcome.body["status"]
    assert live["lastScalingDecision"]["dedicated"] >= 1
    assert condition(live)["status"] == "False"
    assert condition(live)["reason"] == "MetricsAvailable"
    assert condition(live)["message"] == "2 of 2 replicas read"
    # The memory, in a ConfigMap the service owns (deleted with it).
    cm = state_config_map(api_client, "scaled")
    (owner,) = cm.metadata.owner_references
    assert (owner.kind, owner.uid, owner.controller) == (
        "InferenceService", service["metadata"]["uid"], True,
    )  # fmt: skip
    kept = restore(json.loads(cm.data[STATE_KEY]))
    last = live["lastScalingDecision"]
    assert kept.total == last["dedicated"] + last["spot"]
    assert kept.first_now == T0 and kept.last_now is not None and kept.last_now >= T0
    # A new leader (a fresh process) resumes from it: the first start's window, not a
    # new cold start's (which would hold the fleet until now + 300 s).
    clock.now += 10
    restarted = autoscaler(clock)
    tick(api_client, "scaled", restarted, pods)
    resumed = restarted._memory[("default", "scaled")].state
    assert resumed.first_now == T0 and resumed.damping.floor == kept.damping.floor == (T0 + 300, 2)
    assert resumed.total == kept.total and resumed.last_now == clock.now


def test_a_broken_state_is_logged_and_the_policy_starts_cold_from_the_deployments(
    api, engine, caplog
):
    from kubernetes import client

    api_client = api[1]
    create(api_client, "broken")
    pods = [engine_pod("broken-dedicated-a", "dedicated", engine, "broken")]
    clock = Clock()
    tick(api_client, "broken", autoscaler(clock), pods)
    # The last operator decided 4 (its Deployments ask for them) and went away before
    # the pods were created: one is listed.
    decided = {"time": "2027-01-15T08:00:00Z", "dedicated": 2, "spot": 2,
               "reason": "QueueAboveTarget", "message": "4 replicas"}  # fmt: skip
    client.CustomObjectsApi(api_client).patch_namespaced_custom_object_status(
        *GVP, "broken", {"status": {"lastScalingDecision": decided}}
    )
    core = client.CoreV1Api(api_client)
    name = autoscaler_state_name("broken")
    core.patch_namespaced_config_map(name, "default", {"data": {STATE_KEY: '{"v": 1}'}})
    clock.now += 10
    restarted = autoscaler(clock)
    with caplog.at_level(logging.WARNING, logger="infleet.operator.autoscale"):
        outcome = tick(api_client, "broken", restarted, pods)
    assert "default/broken: autoscaler state not restored, starting cold" in caplog.text
    assert "version 1, expected 2" in caplog.text
    # Cold: it holds every replica the Deployments ask for, for a stabilization window.
    memory = restarted._memory[("default", "broken")]
    assert memory.state.damping.floor == (clock.now + 300.0, 4)
    last = outcome.body["status"]["lastScalingDecision"]
    assert last["dedicated"] + last["spot"] == 4
    # And its state is written anew, readable again.
    assert restore(json.loads(state_config_map(api_client, "broken").data[STATE_KEY])).total == 4


def test_unreadable_replicas_are_counted_and_raise_the_condition_past_the_grace(api):
    api_client = api[1]
    create(api_client, "dark")
    dead = free_port()
    pods = [
        engine_pod("dark-dedicated-a", "dedicated", dead, "dark"),
        engine_pod("dark-spot-a", "spot", dead, "dark"),
    ]
    clock, registry = Clock(), CollectorRegistry()
    scaler = autoscaler(clock, registry)
    outcome = tick(api_client, "dark", scaler, pods)
    assert condition(outcome.body["status"])["status"] == "False"  # within the grace
    failures = registry.get_sample_value(
        "infleet_autoscaler_metrics_failures_total",
        {"namespace": "default", "inferenceservice": "dark", "source": "scrape",
         "reason": "ConnectError"},
    )  # fmt: skip
    assert failures == 2.0
    held = outcome.body["status"]["lastScalingDecision"]
    events = []
    for i in range(1, 8):  # 70 s blind: past the 60 s grace
        clock.now = T0 + 10 * i
        outcome = tick(api_client, "dark", scaler, pods)
        events += outcome.events
    status = outcome.body["status"]
    cond = condition(status)
    assert (cond["status"], cond["reason"]) == ("True", "NoReplicaMetrics")
    # Blind since the first read failed (T0), in a message that stays the same meanwhile:
    # after the flip, a blind decision that holds the fleet writes no status at all.
    assert cond["message"].startswith(f"no replica's metrics since {rfc3339(T0)}")
    assert outcome.replaced is None
    assert "last error: dark-dedicated-a: " in cond["message"]
    # One Warning Event when it turned True (at 60 s), none while it stays so.
    flips = [e for e in events if e[1] == "NoReplicaMetrics"]
    assert len(flips) == 1 and flips[0][0] == "Warning" and flips[0][2] == cond["message"]
    # Blind is not idle: the fleet is held.
    last = status["lastScalingDecision"]
    assert (last["dedicated"], last["spot"]) == (held["dedicated"], held["spot"])
    assert (
        registry.get_sample_value(
            "infleet_autoscaler_blind_seconds", {"namespace": "default", "inferenceservice": "dark"}
        )
        == 70.0
    )
    # A reconcile without a decision (not due) keeps the condition as it is.
    outcome = tick(api_client, "dark", scaler, pods)
    assert condition(outcome.body["status"]) == cond
