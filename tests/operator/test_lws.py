"""A replica across nodes: resources.gpusPerNode below resources.gpus renders one
LeaderWorkerSet per pool (leader serves, workers join), for infleet, vLLM and SGLang;
without the CRD the service is Degraded with a reason that says so."""

from __future__ import annotations

import jsonschema
import kubernetes_validate
import pytest
from pydantic import ValidationError

from infleet.operator.errors import SpecError
from infleet.operator.render import RenderOptions, render_children
from tests.operator.samples import engine_isvc

# The LeaderWorkerSet v1 fields we write (leaderworkerset.x-k8s.io/v1, LWS >= 0.6), closed
# so a misspelt field fails; the pod templates are checked against Kubernetes' own schema.
_TEMPLATE = {"type": "object", "required": ["spec"]}
LWS_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "leaderworkerset.x-k8s.io/v1"},
        "kind": {"const": "LeaderWorkerSet"},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["leaderWorkerTemplate"],
            "properties": {
                "replicas": {"type": "integer", "minimum": 0},
                "startupPolicy": {"enum": ["LeaderCreated", "LeaderReady"]},
                "leaderWorkerTemplate": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["size", "workerTemplate"],
                    "properties": {
                        "size": {"type": "integer", "minimum": 1},
                        "restartPolicy": {"enum": ["RecreateGroupOnPodRestart", "None"]},
                        "leaderTemplate": _TEMPLATE,
                        "workerTemplate": _TEMPLATE,
                    },
                },
                "rolloutStrategy": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "type": {"const": "RollingUpdate"},
                        "rollingUpdateConfiguration": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "maxSurge": {"type": ["integer", "string"]},
                                "maxUnavailable": {"type": ["integer", "string"]},
                            },
                        },
                    },
                },
            },
        },
    },
}
MULTI_NODE = {
    "infleet": [],  # `infleet serve` reads LWS_GROUP_SIZE / LWS_WORKER_INDEX / LWS_LEADER_ADDRESS
    "vllm": ["--nnodes=2", "--node-rank=$(LWS_WORKER_INDEX)", "--master-addr=$(LWS_LEADER_ADDRESS)"],
    "sglang": [
        "--nnodes=2", "--node-rank=$(LWS_WORKER_INDEX)", "--dist-init-addr=$(LWS_LEADER_ADDRESS):20000",
    ],
}  # fmt: skip


def two_node_isvc(kind: str, **resources):
    return engine_isvc(
        kind, "mixed", resources={"gpus": 4, "gpusPerNode": 2, **resources},
        engine={"parallelism": {"tensor": 4}},
    )  # fmt: skip


def as_deployment(template: dict) -> dict:
    """A pod template inside a Deployment, so Kubernetes' strict schema checks it."""
    labels = template["metadata"]["labels"]
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "t"},
        "spec": {"selector": {"matchLabels": labels}, "template": template},
    }  # fmt: skip


@pytest.mark.parametrize("kind", list(MULTI_NODE))
def test_a_replica_over_two_nodes_is_a_leader_worker_set(kind):
    children = render_children(two_node_isvc(kind), RenderOptions(leader_worker_set=True))
    assert not [c for c in children if c["kind"] == "Deployment"]
    groups = [c for c in children if c["kind"] == "LeaderWorkerSet"]
    assert len(groups) == 2  # one per pool (dedicated, spot), each counting groups
    for lws in groups:
        jsonschema.validate(lws, LWS_SCHEMA)
        group = lws["spec"]["leaderWorkerTemplate"]
        assert group["size"] == 2
        leader, worker = group["leaderTemplate"], group["workerTemplate"]
        for template in (leader, worker):
            kubernetes_validate.validate(as_deployment(template), "1.33.0", strict=True)
            engine = template["spec"]["containers"][0]
            assert engine["resources"]["limits"]["nvidia.com/gpu"] == "2"  # per pod
            dshm = next(v for v in template["spec"]["volumes"] if v["name"] == "dshm")
            assert dshm["emptyDir"]["sizeLimit"] == "4Gi"
        lead, work = leader["spec"]["containers"][0], worker["spec"]["containers"][0]
        assert lead["args"][-len(MULTI_NODE[kind]) or len(lead["args"]) :] == MULTI_NODE[kind]
        assert "readinessProbe" in lead and "readinessProbe" not in work
        if kind == "vllm":
            assert work["args"][-1] == "--headless"
    service = next(c for c in children if c["kind"] == "Service")
    assert service["spec"]["selector"]["leaderworkerset.sigs.k8s.io/worker-index"] == "0"


def test_without_the_crd_the_service_is_degraded_with_the_reason():
    with pytest.raises(SpecError) as err:
        render_children(two_node_isvc("vllm"), RenderOptions(leader_worker_set=False))
    assert err.value.reason == "LeaderWorkerSetNotInstalled"
    assert str(err.value) == (
        "resources.gpusPerNode: 4 GPUs per replica at 2 per node make 2-pod groups, which "
        "need the LeaderWorkerSet CRD (leaderworkerset.x-k8s.io/v1); it is not installed in "
        "this cluster"
    )


def test_tgi_cannot_span_nodes_and_gpus_per_node_must_divide_gpus():
    with pytest.raises(SpecError, match="a replica across nodes is not supported by engine tgi"):
        render_children(two_node_isvc("tgi"), RenderOptions(leader_worker_set=True))
    with pytest.raises(
        ValidationError, match=r"resources\.gpusPerNode must divide resources\.gpus"
    ):
        two_node_isvc("vllm", gpusPerNode=3)


def test_gpus_per_node_equal_to_gpus_stays_one_pod():
    children = render_children(two_node_isvc("vllm", gpusPerNode=4))
    assert [c["kind"] for c in children].count("Deployment") == 2
    assert "LeaderWorkerSet" not in [c["kind"] for c in children]


def test_a_group_is_one_replica_for_the_status_the_autoscaler_and_pruning():
    from infleet.autoscaler.kube_view import pod_states, pod_view
    from infleet.operator.autoscale import desired_replicas
    from infleet.operator.diff import to_prune
    from infleet.operator.status import pool_state

    lws = {
        "kind": "LeaderWorkerSet", "metadata": {"name": "s-dedicated", "generation": 3},
        "spec": {"replicas": 2},
        "status": {"replicas": 2, "readyReplicas": 1, "updatedReplicas": 2},
    }  # fmt: skip
    state = pool_state(lws, 2)  # LWS reports no observedGeneration
    assert (state.desired, state.current, state.ready, state.rolled_out) == (2, 2, 1, True)
    assert desired_replicas({"dedicated": lws, "spot": None}) == 2  # groups, not pods

    def pod(name: str, index: str) -> dict:
        labels = {"infleet.io/pool": "dedicated", "leaderworkerset.sigs.k8s.io/worker-index": index}
        ready = {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
        return {"metadata": {"name": name, "labels": labels},
                "spec": {"nodeName": "n"}, "status": {"conditions": [ready]}}  # fmt: skip

    pods = [pod_view(pod(f"s-{g}-{i}", str(i))) for g in range(2) for i in range(2)]
    assert [s.name for s in pod_states(pods, 0.0)] == ["s-0-0", "s-1-0"]  # the leaders

    uid = "u1"
    owned = {"ownerReferences": [{"uid": uid, "controller": True}]}
    old = {"kind": "Deployment", "metadata": {"name": "s-dedicated", **owned}}
    new = {"kind": "LeaderWorkerSet", "metadata": {"name": "s-dedicated"}}
    assert to_prune([new], [old], uid) == [old]  # moving to several nodes: the Deployment goes
