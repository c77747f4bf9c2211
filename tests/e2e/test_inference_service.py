"""One InferenceService through its life, driven with kubectl. The scenarios run in file
order on one service (each engine start costs seconds of CPU): apply -> Ready -> a chat
completion through its Service; invalid specs rejected; `kubectl scale`; a spot
interruption with requests in flight; a changed spec rolls out; an operator restart
resumes without duplicate children; delete removes every child."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import pytest

from tests.e2e.cluster import INTERRUPT_ANNOTATION, Cluster

NAME = "e2e"
SELECTOR = f"infleet.io/inferenceservice={NAME}"
CHILD_KINDS = ("deployments", "services", "poddisruptionbudgets", "configmaps", "networkpolicies")
READY_TIMEOUT = 300
# A cluster without GPUs or spot nodes (kind, k3d): INFLEET_E2E_GPUS=0 INFLEET_E2E_SPOT=off.
GPUS = int(os.environ.get("INFLEET_E2E_GPUS", "1"))
SPOT_PRESET = os.environ.get("INFLEET_E2E_SPOT", "gke")  # a capacity.spot.preset, or "off"


def manifest(
    ns: str,
    *,
    env: list[dict[str, str]] | None = None,
    kv_cache: dict[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    spot = SPOT_PRESET != "off"
    body: dict[str, Any] = {
        "model": {"uri": "builtin:smollm2-135m-instruct"},
        "resources": {"gpus": GPUS, "cpu": "1", "memory": "2Gi"},
        "scaling": {"minReplicas": 1, "maxReplicas": 3},
        "router": {"enabled": False},  # clients straight to the engines (test_router.py: on)
        "capacity": {
            "dedicated": {"min": 0 if spot else 1},
            "spot": {"enabled": True, "max": 3, "preset": SPOT_PRESET}
            if spot
            else {"enabled": False},
        },
        **spec,
    }
    if env:
        body["engine"] = {"env": env}
    if kv_cache:
        body.setdefault("engine", {})["kvCache"] = kv_cache
    return {
        "apiVersion": "infleet.io/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": NAME, "namespace": ns},
        "spec": body,
    }


def _isvc(cluster: Cluster, ns: str) -> dict[str, Any]:
    return cluster.get("inferenceservice", NAME, "-n", ns)


def _ready(cluster: Cluster, ns: str, replicas: int | None = None) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = _isvc(cluster, ns)
        status = obj.get("status") or {}
        ready = any(
            c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or []
        )
        current = status.get("observedGeneration") == obj["metadata"]["generation"]
        enough = replicas is None or status.get("replicas") == replicas
        return obj if ready and current and enough else None

    return cluster.wait_for(check, READY_TIMEOUT, f"{NAME} Ready ({replicas} replicas)")


def _engine_pods(cluster: Cluster, ns: str) -> list[dict[str, Any]]:
    return [
        p
        for p in cluster.get("pods", "-n", ns, "-l", SELECTOR)["items"]
        if not p["metadata"].get("deletionTimestamp")
    ]


def _children(cluster: Cluster, ns: str) -> dict[str, list[tuple[str, str]]]:
    return {
        kind: sorted(
            (o["metadata"]["name"], o["metadata"]["uid"])
            for o in cluster.get(kind, "-n", ns, "-l", SELECTOR)["items"]
        )
        for kind in CHILD_KINDS
    }


def test_apply_becomes_ready_and_answers(cluster: Cluster, namespace: str) -> None:
    cluster.apply(manifest(namespace))
    cluster.kubectl(
        "wait",
        f"inferenceservice/{NAME}",
        "-n",
        namespace,
        "--for=condition=Ready",
        f"--timeout={READY_TIMEOUT}s",
        timeout=READY_TIMEOUT + 30,
    )
    obj = _ready(cluster, namespace)
    url = obj["status"]["url"]
    assert url.endswith("/v1")
    cluster.run_client(namespace, "ask", url, 1, 24, "What is the capital of France?")
    [answer] = cluster.client_result(namespace, "ask")
    assert answer["status"] == 200 and "Paris" in answer["content"], answer
    children = _children(cluster, namespace)
    deployments = [n for n, _ in children["deployments"]]
    assert f"{NAME}-dedicated" in deployments
    assert set(deployments) <= {f"{NAME}-dedicated", f"{NAME}-spot"}
    assert [n for n, _ in children["services"]] == [NAME]
    # The engine's flags, and the autoscaler's saved state once it has decided.
    configmaps = {n for n, _ in children["configmaps"]}
    assert f"{NAME}-engine" in configmaps <= {f"{NAME}-engine", f"{NAME}-autoscaler"}


def test_invalid_specs_are_rejected_with_the_rule(cluster: Cluster, namespace: str) -> None:
    bad = manifest(namespace, scaling={"minReplicas": 5, "maxReplicas": 2})
    bad["metadata"]["name"] = "bad"
    out = cluster.apply(bad, check=False)
    assert out.returncode != 0
    assert 'The InferenceService "bad" is invalid' in out.stderr
    assert "scaling.minReplicas must be less than or equal to scaling.maxReplicas" in out.stderr
    bad["spec"]["scaling"] = {"minReplicas": 1, "maxReplicas": 2}
    bad["spec"]["engine"] = {"kind": "nope"}
    out = cluster.apply(bad, check=False)
    assert 'spec.engine.kind: Unsupported value: "nope"' in out.stderr
    assert not cluster.exists("inferenceservice", "bad", "-n", namespace)


def test_kubectl_scale_uses_the_scale_subresource(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("scale", f"inferenceservice/{NAME}", "-n", namespace, "--replicas=2")
    assert _isvc(cluster, namespace)["spec"]["replicas"] == 2
    _ready(cluster, namespace, replicas=2)
    cluster.wait_for(lambda: len(_engine_pods(cluster, namespace)) == 2, 60, "2 engine pods")
    deploys = cluster.get("deployments", "-n", namespace, "-l", SELECTOR)["items"]
    assert sum(d["spec"]["replicas"] for d in deploys) == 2


def _interrupt(cluster: Cluster, node: str) -> threading.Thread | None:
    if cluster.is_local_plane():
        cluster.kubectl("annotate", "node", node, f"{INTERRUPT_ANNOTATION}=3")
        return None
    # A real cluster: the documented fallback, a taint plus a drain (evictions honour PDBs).
    cluster.kubectl(
        "taint", "node", node, "cloud.google.com/impending-node-termination=true:NoSchedule"
    )
    drain = threading.Thread(
        target=cluster.kubectl,
        args=("drain", node, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=300s"),
        kwargs={"timeout": 330},
    )
    drain.start()
    return drain


def test_spot_interruption_drains_and_replaces(cluster: Cluster, namespace: str) -> None:
    if SPOT_PRESET == "off":
        pytest.skip("INFLEET_E2E_SPOT=off: this cluster has no spot capacity")
    spot = [
        p
        for p in _engine_pods(cluster, namespace)
        if p["metadata"]["labels"].get("infleet.io/pool") == "spot" and p["spec"].get("nodeName")
    ]
    if not spot:
        pytest.skip("no engine replica landed on a spot node in this cluster")
    victim = spot[0]
    node = victim["spec"]["nodeName"]
    url = _isvc(cluster, namespace)["status"]["url"]
    # Short enough to finish inside the drain window (notice 3 s + preStop + the engine's
    # shutdown grace) on a loaded 2-core machine, long enough to be in flight.
    cluster.run_client(
        namespace, "inflight", url, 4, 48, "Write a long story about a dragon who learns to fly."
    )
    cluster.wait_for(
        lambda: (
            "started" in cluster.kubectl("logs", "inflight", "-n", namespace, check=False).stdout
        ),
        120,
        "client started",
    )
    time.sleep(1.0)
    interrupted_at = time.time()
    drain = _interrupt(cluster, node)
    results = cluster.client_result(namespace, "inflight")
    assert [r["status"] for r in results] == [200] * 4, results
    assert all(r["content"] for r in results)
    assert any(r["end"] > interrupted_at for r in results), "no request was in flight"
    cluster.wait_for(
        lambda: not cluster.exists("pod", victim["metadata"]["name"], "-n", namespace),
        180,
        "the interrupted pod to go",
    )
    obj = _ready(cluster, namespace, replicas=2)
    assert obj["status"]["replicas"] == 2
    assert all(p["spec"].get("nodeName") != node for p in _engine_pods(cluster, namespace))
    if drain is not None:
        drain.join()
        cluster.kubectl("uncordon", node)
        cluster.kubectl("taint", "node", node, "cloud.google.com/impending-node-termination-")


def test_changed_spec_rolls_out(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("scale", f"inferenceservice/{NAME}", "-n", namespace, "--replicas=1")
    _ready(cluster, namespace, replicas=1)
    before = {p["metadata"]["uid"] for p in _engine_pods(cluster, namespace)}
    generation = _isvc(cluster, namespace)["metadata"]["generation"]
    # The new template also has KV tiers: DRAM (memory raised) and NVMe (an emptyDir).
    tiers = {"dram": "64Mi", "nvme": "256Mi"}
    changed = manifest(
        namespace, env=[{"name": "E2E_ROLLOUT", "value": "2"}], kv_cache=tiers, replicas=1
    )
    cluster.apply(changed)
    obj = _ready(cluster, namespace, replicas=1)
    assert obj["metadata"]["generation"] > generation
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]

    def rolled() -> bool:
        pods = _engine_pods(cluster, namespace)
        return bool(pods) and all(
            p["metadata"]["uid"] not in before
            and {"name": "E2E_ROLLOUT", "value": "2"} in p["spec"]["containers"][0].get("env", [])
            for p in pods
        )

    cluster.wait_for(rolled, READY_TIMEOUT, "pods of the new template only")
    _ready(cluster, namespace, replicas=1)
    [pod] = _engine_pods(cluster, namespace)
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["kv-nvme"]["emptyDir"]["sizeLimit"] == "1280Mi"  # 256Mi + 1Gi headroom
    assert pod["spec"]["containers"][0]["resources"]["limits"]["memory"] == "2112Mi"
    # The engine started with its tiers and serves from them.
    url = _isvc(cluster, namespace)["status"]["url"]
    cluster.run_client(namespace, "tiers", url, 1, 8, "What is the capital of France?")
    [answer] = cluster.client_result(namespace, "tiers")
    assert answer["status"] == 200, answer
    logs = cluster.kubectl("logs", pod["metadata"]["name"], "-n", namespace, "-c", "engine")
    assert "KV tiers: DRAM tier 64.0 MiB" in logs.stdout and "NVMe tier" in logs.stdout


def test_operator_restart_resumes_without_duplicates(cluster: Cluster, namespace: str) -> None:
    before = _children(cluster, namespace)
    ns, deploy = cluster.operator
    cluster.kubectl("rollout", "restart", f"deployment/{deploy}", "-n", ns)
    cluster.kubectl(
        "rollout", "status", f"deployment/{deploy}", "-n", ns, "--timeout=180s", timeout=200
    )
    obj = _isvc(cluster, namespace)
    target = obj["spec"].get("scaling", {}).get("targetQueueDepth", 4) + 1
    cluster.kubectl(
        "patch",
        f"inferenceservice/{NAME}",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        f'{{"spec": {{"scaling": {{"targetQueueDepth": {target}}}}}}}',
    )
    _ready(cluster, namespace)  # observedGeneration caught up: the new operator reconciled
    after = _children(cluster, namespace)
    assert after == before


def test_delete_removes_every_child(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl(
        "delete", f"inferenceservice/{NAME}", "-n", namespace, "--timeout=180s", timeout=200
    )

    def leftovers() -> list[str]:
        out = []
        for kind in (*CHILD_KINDS, "replicasets", "pods"):
            out += [
                f"{kind}/{o['metadata']['name']}"
                for o in cluster.get(kind, "-n", namespace, "-l", SELECTOR)["items"]
            ]
        out += [
            f"endpointslices/{o['metadata']['name']}"
            for o in cluster.get(
                "endpointslices", "-n", namespace, "-l", f"kubernetes.io/service-name={NAME}"
            )["items"]
        ]
        return out

    cluster.wait_for(lambda: not leftovers(), 180, "every child gone")
