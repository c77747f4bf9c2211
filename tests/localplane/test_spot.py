"""Spot interruption: kubectl annotates a node; the node is tainted, its pods get a
notice Event, then DisruptionTarget + graceful deletion (in-flight requests finish),
the Deployment replaces them elsewhere, and a fresh node replaces the old one."""

import threading
import time

import httpx
import pytest

from infleet.localplane.nodes import INTERRUPT_ANNOTATION
from tests.localplane.harness import RunningPlane
from tests.localplane.manifests import namespace
from tests.localplane.pods import SPOT, deployment, server_container

NS = "spot"


@pytest.mark.slow
def test_spot_interruption_drains_and_replaces(plane: RunningPlane) -> None:
    plane.apply(
        [
            namespace(NS),
            deployment(
                "svc", NS, 2, server_container(), pod={**SPOT, "terminationGracePeriodSeconds": 20}
            ),
        ]
    )
    plane.kubectl("rollout", "status", "deployment/svc", "-n", NS, "--timeout=60s")
    victim = plane.get("pods", "-n", NS)["items"][0]
    node, ip = victim["spec"]["nodeName"], victim["status"]["podIP"]
    result: dict = {}
    inflight = threading.Thread(
        target=lambda: result.update(r=httpx.get(f"http://{ip}:8080/slow?s=2.5", timeout=20))
    )
    inflight.start()
    time.sleep(0.2)
    start = time.monotonic()
    plane.kubectl("annotate", "node", node, f"{INTERRUPT_ANNOTATION}=1")
    tainted = plane.get("node", node)
    assert {
        "key": "cloud.google.com/impending-node-termination",
        "value": "true",
        "effect": "NoSchedule",
    } in tainted["spec"]["taints"]
    notice = plane.get(
        "events",
        "-n",
        NS,
        "--field-selector",
        f"involvedObject.name={victim['metadata']['name']},reason=SpotInterruption",
    )
    assert "evicted in 1s" in notice["items"][0]["message"]
    target = plane.wait_for(
        lambda: next(
            (
                c
                for c in plane.get("pod", victim["metadata"]["name"], "-n", NS)["status"][
                    "conditions"
                ]
                if c["type"] == "DisruptionTarget"
            ),
            None,
        ),
        what="DisruptionTarget",
    )
    assert target["reason"] == "TerminationByKubelet" and time.monotonic() - start >= 0.9
    inflight.join()
    assert result["r"].status_code == 200 and result["r"].text == "done"
    plane.wait_for(
        lambda: plane.kubectl("get", "node", node, check=False).returncode == 1, what="node removed"
    )
    plane.kubectl("rollout", "status", "deployment/svc", "-n", NS, "--timeout=60s")
    pods = plane.get("pods", "-n", NS)["items"]
    assert victim["metadata"]["name"] not in {p["metadata"]["name"] for p in pods}
    assert all(p["spec"]["nodeName"] != node for p in pods)
    spot_nodes = [n for n in plane.get("nodes", "-l", "cloud.google.com/gke-spot=true")["items"]]
    assert len(spot_nodes) == 4 and "spot-4" in {n["metadata"]["name"] for n in spot_nodes}
    fresh = next(n for n in spot_nodes if n["metadata"]["name"] == "spot-4")
    assert fresh["spec"]["taints"] == [
        {"key": "cloud.google.com/gke-spot", "value": "true", "effect": "NoSchedule"}
    ]


@pytest.mark.slow
def test_kubectl_drain_honours_the_disruption_budget(plane: RunningPlane) -> None:
    ns = "drain"
    plane.apply(
        [
            namespace(ns),
            deployment(
                "db",
                ns,
                2,
                server_container(),
                pod={"nodeSelector": {"localplane.infleet.io/node-group": "dedicated"}},
            ),
            {
                "apiVersion": "policy/v1",
                "kind": "PodDisruptionBudget",
                "metadata": {"name": "db", "namespace": ns},
                "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "db"}}},
            },
        ]
    )
    plane.kubectl("rollout", "status", "deployment/db", "-n", ns, "--timeout=60s")
    plane.wait_for(
        lambda: plane.get("pdb", "db", "-n", ns).get("status", {}).get("disruptionsAllowed") == 1,
        what="PDB status",
    )
    node = plane.get("pods", "-n", ns)["items"][0]["spec"]["nodeName"]
    out = plane.kubectl("drain", node, "--ignore-daemonsets", "--timeout=60s", timeout=90)
    assert f"node/{node} drained" in out.stdout
    assert plane.get("node", node)["spec"]["unschedulable"] is True
    plane.kubectl("rollout", "status", "deployment/db", "-n", ns, "--timeout=60s")
    pods = plane.get("pods", "-n", ns)["items"]
    assert all(p["spec"]["nodeName"] != node for p in pods)
    # the budget now blocks a second eviction while only one pod is healthy elsewhere
    other = pods[0]
    plane.kubectl("cordon", other["spec"]["nodeName"])
    blocked = plane.kubectl("drain", other["spec"]["nodeName"], "--timeout=1s", check=False)
    assert "Cannot evict pod as it would violate the pod's disruption budget" in blocked.stderr
    plane.kubectl("uncordon", node)
    plane.kubectl("uncordon", other["spec"]["nodeName"])
