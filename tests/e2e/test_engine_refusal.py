"""A model the bundled engine cannot run: the operator cannot know its architecture before
the fetch, so the engine refuses it at start-up (exit code 2, one line in its termination
message), the kubelet puts that line in the container's terminated state, and the service
is Degraded with reason EngineRefusedModel quoting it. Local plane only: the model server
runs on the test machine."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cluster import Cluster
from tests.e2e.test_gated_model import FILE, TIMEOUT, condition, service
from tests.operator.model_server import GatedModelServer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatedModelServer]:
    import gguf

    path = tmp_path_factory.mktemp("gptj") / FILE
    writer = gguf.GGUFWriter(str(path), "gptj")  # metadata only: refused before any tensor
    writer.add_block_count(1)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with GatedModelServer(Path(path), secrets.token_urlsafe(24)) as s:
        yield s


def test_an_unsupported_architecture_is_degraded_engine_refused_model(
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
        service(namespace, "gptj", server.port, "model-token"),
    )

    def refused() -> dict[str, Any] | None:
        degraded = condition(cluster, namespace, "gptj", "Degraded")
        return degraded if degraded.get("reason") == "EngineRefusedModel" else None

    degraded = cluster.wait_for(refused, TIMEOUT, "gptj Degraded: EngineRefusedModel")
    assert degraded["status"] == "True"
    assert "the engine refused the model" in degraded["message"]
    assert "unsupported GGUF architecture 'gptj'; supported: llama" in degraded["message"]
    assert condition(cluster, namespace, "gptj", "Ready")["status"] == "False"
    cluster.kubectl("delete", "inferenceservice", "gptj", "-n", namespace)
