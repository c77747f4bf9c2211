"""A tensor-parallel replica across two nodes: resources.gpus 2 at gpusPerNode 1 makes
the operator render a LeaderWorkerSet; its group (a leader pod and a worker pod, one
"GPU node" each) fetches a tiny random Llama, joins one TP=2 engine over gloo, becomes
Ready and answers through the `openai` SDK; deleting the leader deletes the group.

Local plane only: the model server runs on the test machine (a real cluster also needs
the LeaderWorkerSet controller installed)."""

from __future__ import annotations

import base64
import secrets
import tarfile
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.e2e.cluster import Cluster
from tests.e2e.test_gated_model import condition
from tests.engine.tiny_models import build_checkpoint
from tests.operator.model_server import GatedModelServer

NAME = "tp"
TIMEOUT = 180
GROUP = "leaderworkerset.sigs.k8s.io/"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatedModelServer]:
    tmp = tmp_path_factory.mktemp("tiny-llama")
    model = build_checkpoint(tmp / "model", "llama")  # 4 heads, 2 KV heads: TP=2 divides
    archive = tmp / "model.tar"
    with tarfile.open(archive, "w") as tar:
        for f in sorted(model.iterdir()):
            tar.add(f, arcname=f.name)
    with GatedModelServer(archive, secrets.token_urlsafe(24)) as s:
        yield s


def service(ns: str, port: int) -> dict[str, Any]:
    return {
        "apiVersion": "infleet.io/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": NAME, "namespace": ns},
        "spec": {
            "model": {
                "uri": f"http://localhost:{port}/model.tar",
                "name": "tiny-llama",
                "credentialsSecretRef": {"name": "model-token"},
            },
            # Mount paths are rewritten on the command line only (docs/localplane.md).
            "engine": {"args": ["--model=/mnt/models"], "parallelism": {"tensor": 2}},
            "resources": {"gpus": 2, "gpusPerNode": 1, "cpu": "1", "memory": "2Gi"},
            "scaling": {"minReplicas": 1, "maxReplicas": 1},
            "router": {"enabled": False},
            "capacity": {"dedicated": {"min": 1}, "spot": {"enabled": False}},
        },
    }


def group_pods(cluster: Cluster, ns: str) -> list[dict[str, Any]]:
    return sorted(
        (
            p
            for p in cluster.get("pods", "-n", ns)["items"]
            if GROUP + "name" in p["metadata"].get("labels", {})
        ),
        key=lambda p: p["metadata"]["name"],
    )


def test_a_tp2_replica_over_two_nodes_serves_and_goes_as_a_group(
    cluster: Cluster, namespace: str, server: GatedModelServer
) -> None:
    if not cluster.is_local_plane():
        pytest.skip("the model server runs on the test machine, out of a cluster's reach")
    token = base64.b64encode(server.token.encode()).decode()
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "model-token", "namespace": namespace},
            "data": {"BEARER_TOKEN": token},
        },
        service(namespace, server.port),
    )

    def ready() -> dict[str, Any] | None:
        if condition(cluster, namespace, NAME, "Ready").get("status") != "True":
            degraded = condition(cluster, namespace, NAME, "Degraded")
            assert degraded.get("status") != "True", degraded
            return None
        return cluster.get("inferenceservice", NAME, "-n", namespace)

    obj = cluster.wait_for(ready, TIMEOUT, f"{NAME} Ready")
    assert obj["status"]["replicas"] == 1  # one group is one replica
    lws = cluster.get("leaderworkerset", f"{NAME}-dedicated", "-n", namespace)
    assert lws["status"]["readyReplicas"] == 1
    leader, worker = group_pods(cluster, namespace)
    assert leader["metadata"]["labels"][GROUP + "worker-index"] == "0"
    assert worker["metadata"]["labels"][GROUP + "worker-index"] == "1"
    assert leader["spec"]["nodeName"] != worker["spec"]["nodeName"]  # two "nodes"
    logs = cluster.kubectl("logs", worker["metadata"]["name"], "-n", namespace).stdout
    assert "rank 1 holds" in logs, logs[-2000:]  # the worker holds rank 1's shard

    client = openai.OpenAI(base_url=obj["status"]["url"], api_key="none", max_retries=0)
    [model] = client.models.list().data
    done = client.completions.create(
        model=model.id, prompt="The quick brown fox", max_tokens=8, temperature=0
    )
    assert done.usage.completion_tokens == 8 and done.choices[0].text

    # The group goes together: deleting the leader deletes its worker too.
    old = {p["metadata"]["uid"] for p in (leader, worker)}
    cluster.kubectl("delete", "pod", leader["metadata"]["name"], "-n", namespace)
    cluster.wait_for(
        lambda: not old & {p["metadata"]["uid"] for p in group_pods(cluster, namespace)},
        60,
        "leader and worker gone",
    )
    cluster.kubectl("delete", "inferenceservice", NAME, "-n", namespace, "--wait=true")
    cluster.wait_for(lambda: group_pods(cluster, namespace) == [], 60, "no group pods left")
