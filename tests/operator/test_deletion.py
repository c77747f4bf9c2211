"""Deletion never waits for the operator: no finalizer, owner references do the rest.

The operator before this one left a finalizer on every InferenceService (kopf's timers
need one); the first reconcile of the new one removes it. Then, with the operator
stopped, deleting a service and deleting its namespace both complete, children included.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from infleet.operator.reconcile import LEGACY_ANNOTATION, LEGACY_FINALIZER
from tests.localplane.harness import RunningPlane, fast_config
from tests.operator.operators import Operator, install_crds, wait_for
from tests.operator.test_ha import service

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
NS = "upgraded"


@pytest.fixture
def plane() -> Iterator[RunningPlane]:
    running = RunningPlane(fast_config(workloads=False))  # the garbage collector is enough
    install_crds(running)
    yield running
    running.stop()


def isvc(plane: RunningPlane, name: str) -> dict:
    return plane.get("inferenceservice", name, "-n", NS)


def deployments(plane: RunningPlane) -> list[str]:
    return sorted(d["metadata"]["name"] for d in plane.get("deployments", "-n", NS)["items"])


def test_deleting_a_service_and_its_namespace_completes_with_the_operator_stopped(plane):
    plane.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    old = service("old")  # as the previous operator left it
    old["metadata"] |= {
        "namespace": NS,
        "finalizers": [LEGACY_FINALIZER, "example.com/keep"],
        "annotations": {LEGACY_ANNOTATION: json.dumps({"spec": old["spec"]})},
    }
    plane.apply(old)
    op = Operator(plane, "op-d")
    try:
        plane.apply(service("new") | {"metadata": {"name": "new", "namespace": NS}})

        def upgraded() -> bool:
            meta = isvc(plane, "old")["metadata"]
            observed = (isvc(plane, "old").get("status") or {}).get("observedGeneration")
            return meta.get("finalizers") == ["example.com/keep"] and observed == 1

        wait_for(upgraded, 30, "the old finalizer removed, the service reconciled", op)
        assert LEGACY_ANNOTATION not in isvc(plane, "old")["metadata"].get("annotations", {})
        wait_for(lambda: len(deployments(plane)) == 4, 30, "both services' Deployments", op)
        assert "finalizers" not in isvc(plane, "new")["metadata"]  # none added, ever
    finally:
        op.stop()
    # Someone else's finalizer stays someone else's business.
    plane.kubectl("patch", "inferenceservice", "old", "-n", NS, "--type=json",
                  "-p", '[{"op": "remove", "path": "/metadata/finalizers"}]')  # fmt: skip

    plane.kubectl("delete", "inferenceservice", "old", "-n", NS, "--timeout=20s")
    wait_for(lambda: deployments(plane) == ["new-dedicated", "new-spot"], 20, "old's children gone")
    plane.kubectl("delete", "namespace", NS, "--timeout=30s")
    gone = plane.kubectl("get", "namespace", NS, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr
