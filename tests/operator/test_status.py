"""Status from the children's state: conditions, replica counts, URL, events."""

from infleet.operator.replicas import PoolReplicas
from infleet.operator.status import PodTroubles, Problem, compute_status, decision_events
from tests.operator.samples import body

T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"


def deployment(replicas, ready, *, generation=1, observed=1, updated=None, conditions=()):
    return {
        "metadata": {"generation": generation},
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": observed,
            "replicas": replicas,
            "updatedReplicas": replicas if updated is None else updated,
            "readyReplicas": ready,
            "conditions": list(conditions),
        },
    }


SERVICE = {"metadata": {"name": "chat"}, "spec": {}}


def conditions(status):
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def test_all_ready():
    deps = {"dedicated": deployment(1, 1), "spot": deployment(2, 2)}
    status = compute_status(body(), deps, SERVICE, PoolReplicas(1, 2), T0)
    assert conditions(status) == {
        "Ready": ("True", "AllReplicasReady"),
        "Progressing": ("False", "RolloutComplete"),
        "Degraded": ("False", "AsExpected"),
    }
    assert status["conditions"][0]["message"] == "3/3 replicas ready (dedicated 1/1, spot 2/2)"
    assert all(c["observedGeneration"] == 3 for c in status["conditions"])
    assert status["observedGeneration"] == 3
    assert status["replicas"] == 3 and status["readyReplicas"] == 3
    assert status["pools"] == {
        "dedicated": {"desired": 1, "ready": 1},
        "spot": {"desired": 2, "ready": 2},
    }
    assert status["selector"] == "infleet.io/inferenceservice=chat"
    assert status["url"] == "http://chat.team-a.svc.cluster.local:8000/v1"
    assert "lastScalingDecision" not in status  # the autoscaler's field is left alone


def test_scaling_up_is_progressing_not_degraded():
    deps = {"dedicated": deployment(1, 1), "spot": deployment(2, 0, updated=2)}
    status = compute_status(body(), deps, SERVICE, PoolReplicas(1, 2), T0)
    assert conditions(status)["Ready"] == ("False", "ReplicasNotReady")
    assert conditions(status)["Progressing"] == ("True", "RollingOut")
    assert conditions(status)["Degraded"] == ("False", "AsExpected")


def test_new_spec_not_yet_observed_by_the_deployment_is_progressing():
    deps = {"dedicated": deployment(1, 1, generation=2, observed=1), "spot": deployment(0, 0)}
    status = compute_status(body(), deps, SERVICE, PoolReplicas(1, 0), T0)
    assert conditions(status)["Progressing"] == ("True", "RollingOut")
    assert conditions(status)["Ready"] == ("True", "AllReplicasReady")


def test_stuck_rollout_is_degraded_with_the_deployments_message():
    stuck = {
        "type": "Progressing",
        "status": "False",
        "reason": "ProgressDeadlineExceeded",
        "message": 'ReplicaSet "chat-spot-1" has timed out progressing.',
    }
    deps = {"dedicated": deployment(1, 1), "spot": deployment(2, 0, conditions=[stuck])}
    status = compute_status(body(), deps, SERVICE, PoolReplicas(1, 2), T0)
    degraded = status["conditions"][2]
    assert (degraded["status"], degraded["reason"]) == ("True", "RolloutFailed")
    assert degraded["message"] == 'spot: ReplicaSet "chat-spot-1" has timed out progressing.'


def test_invalid_spec_is_degraded_and_reports_what_still_runs():
    problem = Problem("InvalidSpec", "spec.scaling: scaling.minReplicas must be ...")
    deps = {"dedicated": deployment(2, 2), "spot": None}
    status = compute_status(body(), deps, SERVICE, None, T0, problem)
    assert conditions(status) == {
        "Ready": ("False", "InvalidSpec"),  # the spec cannot be rolled out
        "Progressing": ("False", "InvalidSpec"),
        "Degraded": ("True", "InvalidSpec"),
    }
    assert status["conditions"][2]["message"] == problem.message
    assert status["conditions"][0]["message"] == problem.message + (
        " (the last good spec still serves 2/2 replicas ready (dedicated 2/2, spot 0/0))"
    )
    assert status["pools"]["dedicated"] == {"desired": 2, "ready": 2}


def test_a_service_that_cannot_roll_out_is_not_ready_with_the_blocking_reason():
    """Nothing runs and nothing may be applied: never mistaken for a deliberate zero."""
    for reason in ("InvalidSpec", "UnsupportedByEngine", "ApplyFailed"):
        problem = Problem(reason, "spec.engine.quantization: quantization fp4 is not supported")
        status = compute_status(body(), {}, None, None, T0, problem)
        ready = status["conditions"][0]
        assert (ready["type"], ready["status"], ready["reason"]) == ("Ready", "False", reason)
        assert ready["message"] == problem.message


def test_last_transition_time_moves_only_on_a_flip():
    deps = {"dedicated": deployment(1, 1), "spot": deployment(0, 0)}
    first = compute_status(body(), deps, SERVICE, PoolReplicas(1, 0), T0)
    obj = {**body(), "status": first}
    same = compute_status(obj, deps, SERVICE, PoolReplicas(1, 0), T1)
    assert [c["lastTransitionTime"] for c in same["conditions"]] == [T0, T0, T0]
    down = {"dedicated": deployment(1, 0), "spot": deployment(0, 0)}
    flipped = compute_status(obj, down, SERVICE, PoolReplicas(1, 0), T1)
    times = {c["type"]: c["lastTransitionTime"] for c in flipped["conditions"]}
    assert times == {"Ready": T1, "Progressing": T1, "Degraded": T0}
    assert conditions(flipped)["Ready"] == ("False", "NoReplicasReady")


def test_scaled_to_zero_on_purpose_is_ready_and_says_why():
    deps = {"dedicated": deployment(0, 0), "spot": deployment(0, 0)}
    plan = PoolReplicas(0, 0, "spec.replicas is 0")
    status = compute_status(body(), deps, SERVICE, plan, T0)
    assert conditions(status)["Ready"] == ("True", "ScaledToZero")
    assert status["conditions"][0]["message"] == "scaled to zero on purpose: spec.replicas is 0"


def test_url_uses_the_services_loopback_address_when_it_has_one():
    service = {
        **SERVICE,
        "status": {
            "loadBalancer": {
                "ingress": [{"ip": "127.0.0.1", "ports": [{"port": 41234, "protocol": "TCP"}]}]
            }
        },
    }
    status = compute_status(body(), {}, service, PoolReplicas(1, 0), T0)
    assert status["url"] == "http://127.0.0.1:41234/v1"
    no_service = compute_status(body(), {}, None, PoolReplicas(1, 0), T0)
    assert "url" not in no_service


def test_events_for_decisions():
    deps = {"dedicated": deployment(1, 1), "spot": deployment(2, 2)}
    old = compute_status(
        body(),
        {"dedicated": deployment(1, 1), "spot": deployment(0, 0)},
        SERVICE,
        PoolReplicas(1, 0),
        T0,
    )
    new = compute_status({**body(), "status": old}, deps, SERVICE, PoolReplicas(1, 2), T1)
    assert decision_events(old, new) == [("Normal", "ScaledPool", "spot pool: 0 -> 2 replicas")]
    bad = compute_status(
        {**body(), "status": new}, deps, SERVICE, None, T1, Problem("InvalidSpec", "spec.x: y")
    )
    assert decision_events(new, bad) == [("Warning", "InvalidSpec", "spec.x: y")]
    assert decision_events(bad, bad) == []


def test_a_failing_model_fetch_is_degraded_with_the_fetchers_last_words():
    from infleet.operator.pod_trouble import fetch_failures, fetch_trouble

    failed = {
        "metadata": {"name": "chat-dedicated-x"},
        "status": {
            "initContainerStatuses": [
                {
                    "name": "fetch-model",
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {
                        "terminated": {
                            "exitCode": 1,
                            "message": "Initializing\nURI: http://m/x.gguf returned a 401 response code.\n",
                        }
                    },
                }
            ]
        },
    }
    missing_secret = {
        "metadata": {"name": "chat-dedicated-y"},
        "status": {
            "initContainerStatuses": [
                {
                    "name": "fetch-model",
                    "state": {
                        "waiting": {
                            "reason": "CreateContainerConfigError",
                            "message": 'secret "hf-token" not found',
                        }
                    },
                }
            ]
        },
    }
    fetching = {"metadata": {"name": "z"}, "status": {"initContainerStatuses": [
        {"name": "fetch-model", "state": {"running": {}}}
    ]}}  # fmt: skip
    pods = [{**p, "fetchTrouble": fetch_trouble(p)} for p in (failed, missing_secret, fetching)]
    found = fetch_failures(pods)
    assert found == [
        "pod chat-dedicated-x: the model fetch failed (exit code 1: Initializing / URI: "
        "http://m/x.gguf returned a 401 response code.)",
        "pod chat-dedicated-y: the model fetch failed (CreateContainerConfigError: secret "
        '"hf-token" not found)',
    ]
    deps = {"dedicated": deployment(1, 0), "spot": None}
    troubles = PodTroubles(found, [])
    status = compute_status(body(), deps, SERVICE, PoolReplicas(1, 0), T0, None, troubles)
    assert conditions(status)["Degraded"] == ("True", "ModelFetchFailed")
    assert conditions(status)["Ready"] == ("False", "NoReplicasReady")


def test_an_engine_that_refuses_its_model_is_degraded_with_its_termination_message():
    from infleet.operator.pod_trouble import engine_refusal, engine_refusals

    line = (
        "infleet serve: unsupported model architecture GPTJForCausalLM; supported: "
        "LlamaForCausalLM, MixtralForCausalLM"
    )

    def pod(name, state, last=None):
        engine = {"name": "engine", "state": state, "lastState": last or {}}
        return {"metadata": {"name": name}, "status": {"containerStatuses": [engine]}}

    refused = pod(
        "chat-dedicated-a",
        {"waiting": {"reason": "CrashLoopBackOff"}},
        {"terminated": {"exitCode": 2, "reason": "Error", "message": line + "\n"}},
    )
    crashed = pod("chat-dedicated-b", {"terminated": {"exitCode": 1, "message": "Traceback"}})
    silent = pod("chat-dedicated-c", {"terminated": {"exitCode": 2, "reason": "Error"}})
    running = pod("chat-dedicated-d", {"running": {}})
    assert [engine_refusal(p) for p in (refused, crashed, silent, running)] == [
        line,
        None,
        None,
        None,
    ]
    pods = [{**p, "engineRefusal": engine_refusal(p)} for p in (refused, crashed, running)]
    found = engine_refusals(pods)
    assert found == [f"pod chat-dedicated-a: the engine refused the model ({line})"]
    deps = {"dedicated": deployment(1, 0), "spot": None}
    status = compute_status(
        body(), deps, SERVICE, PoolReplicas(1, 0), T0, None, PodTroubles([], found)
    )
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "EngineRefusedModel")
    assert "GPTJForCausalLM" in degraded["message"] and "MixtralForCausalLM" in degraded["message"]
    assert conditions(status)["Ready"] == ("False", "NoReplicasReady")
