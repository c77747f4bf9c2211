"""Replica discovery from EndpointSlices over plain HTTP, against the local control plane
(a real API server process speaking list + watch), with slices written by kubectl."""

from __future__ import annotations

import base64
import concurrent.futures
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from infleet.router.config import RouterConfig
from infleet.router.kube_discovery import KubeAccess, endpoints_of, watch_endpoint_slices
from infleet.router.proxy import Router
from tests.localplane.harness import RunningPlane, fast_config
from tests.router.fake_engine import FakeEngine
from tests.router.harness import Loop, RunningRouter, start_engines, wait_until


@pytest.fixture(scope="module")
def plane() -> Iterator[RunningPlane]:
    running = RunningPlane(fast_config())
    yield running
    running.stop()


def access_of(plane: RunningPlane, tmp: Path) -> KubeAccess:
    """The plane's server, token and CA, the way a kubeconfig gives them."""
    config = plane.plane.kubeconfig()
    cluster, user = config["clusters"][0]["cluster"], config["users"][0]["user"]
    token = tmp / "token"
    token.write_text(user.get("token", ""))
    ca = None
    if "certificate-authority-data" in cluster:
        ca = tmp / "ca.crt"
        ca.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
    return KubeAccess(cluster["server"], token, ca)


def endpoint_slice(name: str, pod: str, port: int, *, ready: bool, terminating: bool) -> dict:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "labels": {"kubernetes.io/service-name": "chat"}},
        "addressType": "IPv4",
        "endpoints": [
            {
                "addresses": ["127.0.0.1"],
                "conditions": {"ready": ready, "serving": True, "terminating": terminating},
                "targetRef": {"kind": "Pod", "name": pod},
            }
        ],
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
    }


def test_endpoints_follow_conditions_and_the_named_port():
    slices = [
        {"endpoints": [{"addresses": ["10.0.0.1"], "targetRef": {"name": "p1"}},
                       {"addresses": ["10.0.0.2"], "conditions": {"ready": False}},
                       {"addresses": ["fd00::3"], "conditions": {"terminating": True}}],
         "ports": [{"name": "metrics", "port": 9090}, {"name": "http", "port": 8000}]},
        {"endpoints": [{"addresses": ["10.0.0.9"]}], "ports": [{"name": "other", "port": 1}]},
    ]  # fmt: skip
    got = {e.name: (e.url, e.ready, e.draining) for e in endpoints_of(slices, "http")}
    assert got == {
        "p1": ("http://10.0.0.1:8000", True, False),
        "10.0.0.2": ("http://10.0.0.2:8000", False, False),
        "fd00::3": ("http://[fd00::3]:8000", False, True),
    }


def test_router_follows_endpoint_slices_of_its_service(plane, loop: Loop, tmp_path: Path):
    a, b = FakeEngine("a"), FakeEngine("b")
    ports = [int(u.rsplit(":", 1)[1]) for u in start_engines(loop, [a, b])]
    plane.apply(endpoint_slice("chat-a", "pod-a", ports[0], ready=True, terminating=False))
    plane.apply(endpoint_slice("chat-b", "pod-b", ports[1], ready=True, terminating=False))
    access = access_of(plane, tmp_path)

    async def kube(router: Router) -> None:
        await watch_endpoint_slices(router.replicas, access, "default", "chat")

    router = RunningRouter(loop, RouterConfig(model="tiny"), kube)
    replicas = router.router.replicas
    post = lambda n: httpx.post(  # noqa: E731
        router.url + "/v1/completions",
        json={"model": "tiny", "prompt": f"request {n} " * 30},
        timeout=30,
    )
    try:
        wait_until(loop, lambda: replicas.ready_count(0) == 2)
        assert set(replicas.replicas) == {"pod-a", "pod-b"}
        assert all(post(n).status_code == 200 for n in range(6))

        # pod-a terminates (a spot notice): it gets nothing new.
        plane.apply(endpoint_slice("chat-a", "pod-a", ports[0], ready=False, terminating=True))
        wait_until(loop, lambda: replicas.ready_count(0) == 1)
        before = len(a.seen)
        assert all(post(n).status_code == 200 for n in range(6, 12))
        assert len(a.seen) == before

        # pod-b goes too: requests are held until a replica is ready again.
        plane.kubectl("delete", "endpointslice", "chat-b")
        wait_until(loop, lambda: set(replicas.replicas) == {"pod-a"})
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            held = pool.submit(post, 99)
            wait_until(loop, lambda: router.router.activator.held == 1)
            plane.apply(endpoint_slice("chat-a", "pod-a", ports[0], ready=True, terminating=False))
            assert held.result(30).status_code == 200
    finally:
        router.stop()
        for e in (a, b):
            loop.run(e.stop())
