"""Hollow pods (no process, Running and Ready at once) for scale tests of controllers."""

import time
from collections.abc import Iterator

import pytest

from tests.localplane.harness import RunningPlane, fast_config
from tests.localplane.manifests import namespace
from tests.localplane.pods import deployment


@pytest.fixture(scope="module")
def hollow() -> Iterator[RunningPlane]:
    running = RunningPlane(fast_config(hollow_pods=True))
    yield running
    running.stop()


@pytest.mark.slow
def test_hollow_pods_roll_out_without_processes(hollow: RunningPlane) -> None:
    hollow.apply(namespace("h"))
    start = time.monotonic()
    hollow.apply(
        [
            deployment(f"d{i}", "h", 10, {"name": "c", "image": "x", "command": ["does-not-exist"]})
            for i in range(10)
        ]
    )
    hollow.wait_for(
        lambda: all(
            d["status"].get("availableReplicas") == 10
            for d in hollow.get("deployments", "-n", "h")["items"]
        ),
        what="100 hollow pods available",
    )
    elapsed = time.monotonic() - start
    pods = hollow.get("pods", "-n", "h")["items"]
    assert len(pods) == 100 and elapsed < 20
    assert all(
        p["status"]["phase"] == "Running" and p["status"]["containerStatuses"][0]["ready"]
        for p in pods
    )
    hollow.kubectl("delete", "namespace", "h", "--timeout=30s")
    assert hollow.get("pods", "-A")["items"] == []
