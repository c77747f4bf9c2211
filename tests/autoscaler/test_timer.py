"""The operator's autoscaling timer, pure parts: pods as the policy sees them, interruption
counting, the spec adapter, one decision step (status and Event reason, written only on
change), and the exported series (prometheus_client's own exposition)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from infleet.api import InferenceService
from infleet.autoscaler.adapter import policy_spec
from infleet.autoscaler.exporter import AutoscalerMetrics
from infleet.autoscaler.kube_view import new_interruptions, pod_states, pod_view, scrape_targets
from infleet.autoscaler.view import PENDING, READY, STARTING, ReplicaMetrics
from infleet.operator.autoscale import Memory, Read, rfc3339, step

T0 = 1_800_000_000.0


def service(status: dict | None = None, **spec) -> InferenceService:
    body = {
        "status": status or {},
        "metadata": {"name": "chat", "namespace": "team-a"},
        "spec": {
            "model": {"uri": "builtin:smollm2-135m-instruct"},
            "scaling": {"minReplicas": 1, "maxReplicas": 8, "targetQueueDepth": 4},
            "capacity": {"dedicated": {"min": 1}, "spot": {"enabled": True, "max": 6}},
            **spec,
        },
    }
    return InferenceService.model_validate(body)


def pod(name, pool, state="ready", ip="10.0.0.1", since=T0 - 600, **extra) -> dict:
    conditions = [{"type": "PodScheduled", "status": "True", "lastTransitionTime": rfc3339(since)}]
    if state == "ready":
        conditions.append({"type": "Ready", "status": "True", "lastTransitionTime": rfc3339(since)})
    if state == "interrupted":
        conditions.append(
            {"type": "DisruptionTarget", "status": "True", "reason": "TerminationByKubelet",
             "lastTransitionTime": rfc3339(T0 - 5)}
        )  # fmt: skip
        conditions.append({"type": "Ready", "status": "True", "lastTransitionTime": rfc3339(since)})
    meta = {
        "name": name,
        "uid": f"uid-{name}",
        "creationTimestamp": rfc3339(since - 30),
        "labels": {"infleet.io/inferenceservice": "chat", "infleet.io/pool": pool},
        **extra,
    }
    spec = {"containers": [{"name": "engine", "ports": [{"name": "http", "containerPort": 8000}]}]}
    if state != "pending":
        spec["nodeName"] = "node-1"
    return {"metadata": meta, "spec": spec, "status": {"podIP": ip, "conditions": conditions}}


def test_pods_become_pool_states_and_scrape_targets():
    pods = [
        pod("chat-dedicated-a", "dedicated"),
        pod("chat-spot-a", "spot", ip="10.0.0.2"),
        pod("chat-spot-b", "spot", state="starting"),
        pod("chat-spot-c", "spot", state="pending", ip=None),
        pod("chat-spot-d", "spot", state="interrupted"),
        pod("chat-spot-e", "spot", deletionTimestamp=rfc3339(T0)),  # scaled down
    ]
    states = {s.name: s for s in pod_states(pods, T0)}
    assert set(states) == {
        f"chat-{n}" for n in ("dedicated-a", "spot-a", "spot-b", "spot-c", "spot-d")
    }
    assert states["chat-spot-a"].phase == READY and not states["chat-spot-a"].notice
    assert states["chat-spot-b"].phase == STARTING
    assert states["chat-spot-c"].phase == PENDING and states["chat-spot-c"].since == T0 - 630
    # Creation times time the pods' start-up (the policy's lead time for a burst).
    assert states["chat-spot-a"].created == T0 - 630 and states["chat-spot-a"].since == T0 - 600
    assert states["chat-spot-d"].notice
    urls = {t.pod: t.url for t in scrape_targets(pods)}
    assert urls["chat-spot-a"] == "http://10.0.0.2:8000/metrics"
    assert "chat-spot-b" not in urls and "chat-spot-e" not in urls


def test_the_trimmed_pod_the_operator_keeps_gives_the_same_view():
    noise = {"managedFields": [{"manager": "kubelet", "fieldsV1": {"f:status": {}}}]}
    pods = [
        pod("chat-dedicated-a", "dedicated", **noise),
        pod("chat-spot-a", "spot", ip="10.0.0.2"),
        pod("chat-spot-b", "spot", state="starting"),
        pod("chat-spot-c", "spot", state="pending", ip=None),
        pod("chat-spot-d", "spot", state="interrupted"),
        pod("chat-spot-e", "spot", deletionTimestamp=rfc3339(T0)),
    ]
    pods[1]["spec"]["containers"][0]["ports"] = [
        {"name": "grpc", "containerPort": 9000},
        {"name": "http", "containerPort": 8080},
    ]
    trimmed = [pod_view(p) for p in pods]
    assert pod_states(trimmed, T0) == pod_states(pods, T0)
    assert scrape_targets(trimmed) == scrape_targets(pods)
    assert scrape_targets(trimmed)[1].url == "http://10.0.0.2:8080/metrics"
    assert new_interruptions(trimmed, set(), T0) == new_interruptions(pods, set(), T0)
    assert "managedFields" not in trimmed[0]["metadata"]
    assert len(repr(trimmed[0])) < len(repr(pods[0]))


def test_an_interruption_is_counted_once():
    pods = [pod("chat-spot-a", "spot", state="interrupted"), pod("chat-spot-b", "spot")]
    times, counted = new_interruptions(pods, set(), T0)
    assert times == [T0 - 5] and counted == {"uid-chat-spot-a"}
    again, counted = new_interruptions(pods, counted, T0 + 10)
    assert again == [] and counted == {"uid-chat-spot-a"}


def test_the_adapter_hands_the_policy_the_apis_own_models():
    isvc = service(
        replicas=3,
        slo={"ttftP95Seconds": 1.5, "spotPreemptionsPerReplicaHour": 0.25},
    )
    spec = policy_spec(isvc.spec)
    # One source of truth: the API's models themselves, not copies with their defaults.
    assert spec.scaling is isvc.spec.scaling and spec.slo is isvc.spec.slo
    assert spec.capacity is isvc.spec.capacity and spec.replicas == 3
    assert (spec.scaling.min_replicas, spec.scaling.max_replicas) == (1, 8)
    assert spec.scaling.scale_down_stabilization_window_seconds == 300
    assert spec.spot_max == 6 and spec.slo.ttft_p95_seconds == 1.5
    assert policy_spec(service(capacity={"spot": {"enabled": True}}).spec).spot_max == 8
    assert policy_spec(service(capacity={"dedicated": {"min": 1}}).spec).spot_max == 0


def metrics_for(pods, waiting, finished) -> Read:
    return Read(
        [
            ReplicaMetrics(t.pod, t.pool, waiting, 30.0, 0.4, 0.0, finished)
            for t in scrape_targets(pods)
        ]
    )


def test_a_step_writes_status_event_reason_and_scale_only_on_change():
    isvc = service()
    pods = [pod("chat-dedicated-a", "dedicated"), pod("chat-spot-a", "spot", ip="10.0.0.2")]
    memory, finished = Memory(), 0.0
    for i in range(8):  # queues well over the target: the fleet must grow
        finished += 50
        now = T0 + 10 * i
        result = step(isvc, pods, metrics_for(pods, 40.0, finished), memory, now)
        memory = result.memory
        if result.status is not None:
            break
    assert result.status is not None
    assert result.status["time"] == rfc3339(now)
    assert result.decision.dedicated + result.decision.spot > 2
    assert result.status["reason"] in ("PanicBurst", "QueueAboveTarget")
    assert result.status["message"].startswith(f"{result.decision.total} replicas:")


def test_a_step_that_decides_what_status_already_says_writes_nothing():
    last = {"time": rfc3339(T0), "dedicated": 1, "spot": 1, "reason": "QueueAtTarget"}
    isvc = service(status={"lastScalingDecision": last})
    pods = [pod("chat-dedicated-a", "dedicated"), pod("chat-spot-a", "spot", ip="10.0.0.2")]
    memory = Memory()
    for i in range(3):
        result = step(isvc, pods, metrics_for(pods, 0.0, 5.0 * i), memory, T0 + 10 * i)
        memory = result.memory
        assert (result.decision.dedicated, result.decision.spot) == (1, 1)
        assert result.status is None


def test_kubectl_scale_pins_the_total_and_the_timer_splits_it():
    isvc = service(replicas=5)
    pods = [pod("chat-dedicated-a", "dedicated")]
    result = step(isvc, pods, metrics_for(pods, 0.0, 0.0), Memory(), T0)
    assert result.decision.total == 5 and result.decision.reason == "ManualOverride"
    assert result.decision.dedicated >= 1 and result.decision.dedicated + result.decision.spot >= 5
    assert "kubectl scale" in result.status["message"]


def test_an_interrupted_spot_pod_is_covered_by_dedicated_in_the_same_step():
    isvc = service(scaling={"minReplicas": 4, "maxReplicas": 8, "targetQueueDepth": 4})
    pods = [pod("chat-dedicated-a", "dedicated")] + [pod(f"chat-spot-{c}", "spot") for c in "abc"]
    memory = Memory()
    for i in range(3):
        result = step(isvc, pods, metrics_for(pods, 0.0, 10.0 * i), memory, T0 + 10 * i)
        memory = result.memory
    assert (result.decision.dedicated, result.decision.spot) == (1, 3)
    pods[1] = pod("chat-spot-a", "spot", state="interrupted")
    result = step(isvc, pods, metrics_for(pods, 0.0, 30.0), memory, T0 + 30)
    assert result.decision.reason == "SpotGapCovered"
    assert result.decision.dedicated == 2 and result.status["dedicated"] == 2
    assert result.decision.new_interruptions == 1


def test_exported_series_carry_the_contract_names_and_labels():
    registry = CollectorRegistry()
    exporter = AutoscalerMetrics(registry)
    isvc = service(slo={"ttftP95Seconds": 1.5})
    pods = [pod("chat-dedicated-a", "dedicated"), pod("chat-spot-a", "spot")]
    result = step(isvc, pods, metrics_for(pods, 0.0, 0.0), Memory(), T0)
    exporter.record("team-a", "chat", policy_spec(isvc.spec), result.observation, result.decision)
    exporter.record("team-a", "chat", policy_spec(isvc.spec), result.observation, result.decision)
    text = generate_latest(registry).decode()
    found = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    labels = (("inferenceservice", "chat"), ("namespace", "team-a"))
    dedicated = tuple(sorted((*labels, ("pool", "dedicated"))))
    spot = tuple(sorted((*labels, ("pool", "spot"))))
    assert found["infleet_autoscaler_desired_replicas", dedicated] == result.decision.dedicated
    assert found["infleet_autoscaler_ready_replicas", spot] == 1.0
    assert found["infleet_spot_interruptions_total", spot] == 0.0
    assert ("infleet_spot_replica_seconds_total", spot) in found
    assert found["infleet_autoscaler_target_queue_depth", labels] == 4.0
    slo = {dict(k)["slo"]: v for (n, k), v in found.items() if n == "infleet_slo_objective"}
    assert slo == {
        "ttft_p95_seconds": 1.5,
        "itl_p95_seconds": 0.15,
        "spot_preemptions_per_replica_hour": 0.1,
        "request_preemption_ratio": 0.01,
    }
    exporter.forget("team-a", "chat")
    assert "team-a" not in generate_latest(registry).decode()
