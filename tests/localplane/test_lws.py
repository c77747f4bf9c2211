"""The LeaderWorkerSet emulation: the CRD is served where the operator looks (API
discovery of leaderworkerset.x-k8s.io/v1); each replica is a group of pods (leader +
workers) with LWS's environment and labels, counted as one replica in status, scaled by
spec.replicas, recreated whole when one of its pods fails, deleted together."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.localplane.harness import RunningPlane, fast_config
from tests.localplane.manifests import namespace

NS = "lws"
# Prints its LWS environment, then waits; exits 1 once when the flag file appears (the
# process that takes the flag removes it, so only one container fails).
PROGRAM = """
import json, os, sys, time
print(json.dumps({k: v for k, v in os.environ.items() if k.startswith("LWS_")}), flush=True)
while True:
    try:
        os.remove(sys.argv[1])
        sys.exit(1)
    except FileNotFoundError:
        time.sleep(0.1)
"""


@pytest.fixture(scope="module")
def plane() -> Iterator[RunningPlane]:
    running = RunningPlane(fast_config())
    running.apply(namespace(NS))
    yield running
    running.stop()


def lws(replicas: int, flag: Path) -> dict[str, Any]:
    def template(role: str) -> dict[str, Any]:
        container = {
            "name": "c",
            "image": "ignored",
            "command": [sys.executable, "-c", PROGRAM, str(flag) if role == "worker" else "-"],
            "resources": {"limits": {"nvidia.com/gpu": "1"}},  # one pod per "GPU node"
        }
        spec = {"containers": [container], "tolerations": [{"operator": "Exists"}]}
        return {"metadata": {"labels": {"role": role}}, "spec": spec}

    return {
        "apiVersion": "leaderworkerset.x-k8s.io/v1",
        "kind": "LeaderWorkerSet",
        "metadata": {"name": "g", "namespace": NS},
        "spec": {
            "replicas": replicas,
            "leaderWorkerTemplate": {
                "size": 2,
                "leaderTemplate": template("leader"),
                "workerTemplate": template("worker"),
            },
        },
    }


def pods(plane: RunningPlane) -> dict[str, dict[str, Any]]:
    items = plane.get("pods", "-n", NS)["items"]
    return {p["metadata"]["name"]: p for p in items if not p["metadata"].get("deletionTimestamp")}


def ready_groups(plane: RunningPlane, n: int) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        status = plane.get("lws", "g", "-n", NS).get("status") or {}
        ok = status.get("replicas") == n and status.get("readyReplicas") == n
        return status if ok and len(pods(plane)) == 2 * n else None

    return plane.wait_for(check, 60, f"{n} ready groups")


def test_discovery_lists_the_crd_where_the_operator_looks(plane: RunningPlane) -> None:
    found = json.loads(plane.kubectl("get", "--raw", "/apis/leaderworkerset.x-k8s.io/v1").stdout)
    assert "leaderworkersets" in {r["name"] for r in found["resources"]}


def test_groups_env_labels_scale_recreate_and_delete(plane: RunningPlane, tmp_path: Path) -> None:
    flag = tmp_path / "fail"
    plane.apply(lws(2, flag))
    status = ready_groups(plane, 2)
    assert status["hpaPodSelector"] == (
        "leaderworkerset.sigs.k8s.io/name=g,leaderworkerset.sigs.k8s.io/worker-index=0"
    )
    live = pods(plane)
    assert sorted(live) == ["g-0", "g-0-1", "g-1", "g-1-1"]
    for group in ("0", "1"):
        leader, worker = live[f"g-{group}"], live[f"g-{group}-1"]
        for pod, index in ((leader, "0"), (worker, "1")):
            labels = pod["metadata"]["labels"]
            assert labels["leaderworkerset.sigs.k8s.io/name"] == "g"
            assert labels["leaderworkerset.sigs.k8s.io/group-index"] == group
            assert labels["leaderworkerset.sigs.k8s.io/worker-index"] == index
            env = json.loads(plane.kubectl("logs", pod["metadata"]["name"], "-n", NS).stdout)
            assert env == {
                "LWS_LEADER_ADDRESS": leader["status"]["podIP"],
                "LWS_GROUP_SIZE": "2",
                "LWS_WORKER_INDEX": index,
                "LWS_NAME": "g",
            }
        assert worker["metadata"]["ownerReferences"][0]["uid"] == leader["metadata"]["uid"]
        assert leader["metadata"]["labels"]["role"] == "leader"
        assert worker["metadata"]["labels"]["role"] == "worker"
        assert worker["spec"]["nodeName"] != leader["spec"]["nodeName"]  # one GPU per node

    # One worker's container fails: its whole group is made again, the other is untouched.
    uids = {name: p["metadata"]["uid"] for name, p in live.items()}
    flag.touch()
    plane.wait_for(
        lambda: (
            len(now := pods(plane)) == 4
            and {n for n in now if now[n]["metadata"]["uid"] != uids.get(n)}
            in ({"g-0", "g-0-1"}, {"g-1", "g-1-1"})
        ),
        60,
        "one group recreated whole",
    )
    ready_groups(plane, 2)
    events = plane.get("events", "-n", NS)["items"]
    assert any(e["reason"] == "RecreateGroup" for e in events)

    # kubectl scale goes through the scale subresource: the highest group goes.
    plane.kubectl("scale", "lws/g", "-n", NS, "--replicas=1")
    ready_groups(plane, 1)
    assert sorted(pods(plane)) == ["g-0", "g-0-1"]

    # Deleting the leader deletes its worker (owned by it); the group comes back whole.
    before = {name: p["metadata"]["uid"] for name, p in pods(plane).items()}
    # No --wait: the group comes back under the same name at once, and kubectl's wait for
    # the old pod's deletion can miss it then; the new UIDs below are what counts.
    plane.kubectl("delete", "pod", "g-0", "-n", NS, "--wait=false")
    plane.wait_for(
        lambda: all(p["metadata"]["uid"] not in before.values() for p in pods(plane).values()),
        30,
        "the leader and its worker replaced",
    )
    ready_groups(plane, 1)

    plane.kubectl("delete", "lws", "g", "-n", NS, "--wait=true", "--timeout=60s")
    plane.wait_for(lambda: plane.get("pods", "-n", NS)["items"] == [], 30, "no pods left")
