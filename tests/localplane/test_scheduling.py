"""Scheduler placement (GPU capacity, spot taints need tolerations, nodeSelector,
affinity), unschedulable pods, and Deployment rolling updates."""

import json
import time

import pytest

from infleet.localplane.nodes import default_pool, node_object
from infleet.localplane.scheduler import tolerates, unfit_reason
from tests.localplane.harness import RunningPlane
from tests.localplane.manifests import namespace
from tests.localplane.pods import SPOT, deployment, server_container

NS = "sched"
GPU = {"limits": {"nvidia.com/gpu": 1}}
SLEEPER = {"name": "c", "image": "x", "command": ["sleep", "300"], "resources": GPU}


def _node(group: int) -> dict:
    return node_object("n", default_pool().groups[group], "127.3.0.9")


def test_fit_rules_pure() -> None:
    dedicated, spot = _node(0), _node(1)
    pod = {"spec": {"containers": [SLEEPER]}}
    assert unfit_reason(pod, dedicated, {}) is None
    assert (
        unfit_reason(pod, spot, {})
        == "node(s) had untolerated taint {cloud.google.com/gke-spot: true}"
    )
    assert unfit_reason({"spec": {"containers": [SLEEPER], **SPOT}}, spot, {}) is None
    assert unfit_reason(pod, dedicated, {"nvidia.com/gpu": 1.0}) == "Insufficient nvidia.com/gpu"
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {
                                "key": "cloud.google.com/gke-spot",
                                "operator": "NotIn",
                                "values": ["true"],
                            }
                        ]
                    }
                ]
            }
        }
    }
    tolerant = {
        "spec": {
            "containers": [SLEEPER],
            "affinity": affinity,
            "tolerations": [{"operator": "Exists"}],
        }
    }
    assert unfit_reason(tolerant, spot, {}) == "node(s) didn't match Pod's node affinity/selector"
    assert unfit_reason(tolerant, dedicated, {}) is None
    taint = {"key": "k", "value": "v", "effect": "NoSchedule"}
    assert tolerates([{"key": "k", "operator": "Equal", "value": "v"}], taint)
    assert not tolerates([{"key": "k", "operator": "Equal", "value": "w"}], taint)
    assert not tolerates([{"key": "k", "operator": "Exists", "effect": "NoExecute"}], taint)


def _nodes_of(plane: RunningPlane, app: str) -> list[str | None]:
    pods = plane.get("pods", "-n", NS, "-l", f"app={app}")["items"]
    return sorted(p["spec"].get("nodeName") or "" for p in pods)


@pytest.mark.slow
def test_gpu_placement_spot_needs_toleration_and_unschedulable(plane: RunningPlane) -> None:
    plane.apply([namespace(NS), deployment("ded", NS, 3, SLEEPER)])
    plane.wait_for(
        lambda: _nodes_of(plane, "ded").count("") == 1 and len(_nodes_of(plane, "ded")) == 3,
        what="2 bound, 1 pending",
    )
    assert _nodes_of(plane, "ded")[1:] == ["dedicated-0", "dedicated-1"]
    pending = next(
        p
        for p in plane.get("pods", "-n", NS, "-l", "app=ded")["items"]
        if not p["spec"].get("nodeName")
    )
    cond = next(c for c in pending["status"]["conditions"] if c["type"] == "PodScheduled")
    assert cond["status"] == "False" and cond["reason"] == "Unschedulable"
    assert cond["message"].startswith(
        "0/6 nodes are available: 2 Insufficient nvidia.com/gpu, "
        "4 node(s) had untolerated taint {cloud.google.com/gke-spot: true}."
    )
    events = plane.get(
        "events",
        "-n",
        NS,
        "--field-selector",
        f"involvedObject.name={pending['metadata']['name']},reason=FailedScheduling",
    )
    assert events["items"] and events["items"][0]["type"] == "Warning"
    plane.apply(deployment("sp", NS, 4, SLEEPER, pod=SPOT))
    plane.wait_for(lambda: "" not in _nodes_of(plane, "sp"), what="spot pods bound")
    assert _nodes_of(plane, "sp") == ["spot-0", "spot-1", "spot-2", "spot-3"]
    # scaling down removes the unscheduled pod first; a freed GPU lets a pending pod in
    plane.kubectl("scale", "deployment/ded", "-n", NS, "--replicas=2")
    plane.wait_for(lambda: _nodes_of(plane, "ded") == ["dedicated-0", "dedicated-1"])
    plane.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "late", "namespace": NS, "labels": {"app": "late"}},
            "spec": {"containers": [SLEEPER]},
        }
    )
    time.sleep(0.5)
    assert _nodes_of(plane, "late") == [""]
    plane.kubectl("scale", "deployment/ded", "-n", NS, "--replicas=1")
    plane.wait_for(lambda: _nodes_of(plane, "late") != [""], what="pending pod scheduled")
    plane.kubectl("delete", "deployment", "ded", "sp", "-n", NS)
    plane.kubectl("delete", "pod", "late", "-n", NS)


@pytest.mark.slow
def test_rolling_update_honours_surge_and_unavailable(plane: RunningPlane) -> None:
    plane.apply(namespace(NS))
    roll = deployment(
        "roll",
        NS,
        3,
        server_container(),
        strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
    )
    plane.apply(roll)
    plane.kubectl("rollout", "status", "deployment/roll", "-n", NS, "--timeout=60s")
    first = plane.get("deployment", "roll", "-n", NS)
    roll["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "V", "value": "2"})
    plane.apply(roll)
    worst_total, worst_ready = 0, 99
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pods = [
            p
            for p in plane.get("pods", "-n", NS, "-l", "app=roll")["items"]
            if not p["metadata"].get("deletionTimestamp")
        ]
        ready = sum(
            any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in p["status"].get("conditions", [])
            )
            for p in pods
        )
        worst_total, worst_ready = max(worst_total, len(pods)), min(worst_ready, ready)
        d = plane.get("deployment", "roll", "-n", NS)
        if (
            d["status"].get("updatedReplicas") == 3
            and d["status"].get("availableReplicas") == 3
            and d["status"].get("replicas") == 3
        ):
            break
        time.sleep(0.2)
    assert worst_total <= 4 and worst_ready >= 3  # maxSurge 1, maxUnavailable 0
    plane.kubectl("rollout", "status", "deployment/roll", "-n", NS, "--timeout=30s")
    d = plane.get("deployment", "roll", "-n", NS)
    assert d["metadata"]["generation"] == first["metadata"]["generation"] + 1
    assert d["status"]["observedGeneration"] == d["metadata"]["generation"]
    sets = plane.get("replicasets", "-n", NS, "-l", "app=roll")["items"]
    assert sorted(rs["spec"]["replicas"] for rs in sets) == [0, 3]
    new = next(rs for rs in sets if rs["spec"]["replicas"] == 3)
    assert new["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    history = plane.kubectl("rollout", "history", "deployment/roll", "-n", NS).stdout
    assert "1 " in history and "2 " in history


def test_custom_scheduler_binds_through_the_binding_subresource(plane: RunningPlane) -> None:
    plane.apply(
        [
            namespace(NS),
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "custom", "namespace": NS},
                "spec": {
                    "schedulerName": "my-scheduler",
                    "containers": [
                        {
                            "name": "c",
                            "image": "x",
                            "command": ["sleep", "60"],
                            "resources": {
                                "requests": {"cpu": "1", "memory": "1Gi"},
                                "limits": {"cpu": "1", "memory": "1Gi"},
                            },
                        }
                    ],
                },
            },
        ]
    )
    time.sleep(0.3)
    pending = plane.get("pod", "custom", "-n", NS)
    assert not pending["spec"].get("nodeName") and pending["status"]["qosClass"] == "Guaranteed"
    binding = {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": "custom"},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "spot-2"},
    }
    path = plane.dir / "binding.json"
    path.write_text(json.dumps(binding))
    plane.kubectl(
        "create", "--raw", f"/api/v1/namespaces/{NS}/pods/custom/binding", "-f", str(path)
    )
    plane.wait_for(
        lambda: plane.get("pod", "custom", "-n", NS)["status"].get("phase") == "Running",
        what="bound pod running",
    )
    assert plane.get("pod", "custom", "-n", NS)["spec"]["nodeName"] == "spot-2"
    plane.kubectl("delete", "pod", "custom", "-n", NS)
