"""Scale from zero: the autoscale step reads the requests a real `infleet router` holds
while the service has no replica (operator/router_demand.py), and scales up on the first."""

from __future__ import annotations

import contextlib
import threading
from urllib.parse import urlsplit

import httpx

from infleet.operator.autoscale import Memory, Read, step
from infleet.operator.router_demand import held_requests
from tests.autoscaler.live_servers import wait_until
from tests.autoscaler.test_timer import T0, service
from tests.router.processes import run_router


def router_pod(url: str, ready: bool = True) -> dict:
    """A router pod as the operator's index keeps it (autoscaler.kube_view.pod_view)."""
    parts = urlsplit(url)
    conditions = [{"type": "Ready", "status": "True" if ready else "False"}]
    return {
        "metadata": {"name": "chat-router-a", "labels": {}},
        "spec": {"containers": [{"ports": [{"name": "http", "containerPort": parts.port}]}]},
        "status": {"podIP": parts.hostname, "conditions": conditions, "phase": "Running"},
    }


def at_zero():
    return service(
        scaling={"minReplicas": 0, "maxReplicas": 4, "scaleToZero": {"enabled": True}},
        capacity={"dedicated": {"min": 0}},
        status={"lastScalingDecision": {"time": "2026-01-01T00:00:00Z", "dedicated": 0,
                                        "spot": 0, "reason": "ScaledToZero", "message": ""}},
    )  # fmt: skip


def test_a_request_held_by_the_router_scales_a_service_at_zero_up():
    # No replica is ever ready (nothing listens on port 9): the router holds what it gets.
    router = run_router(
        "--model", "m", "--replica", "http://127.0.0.1:9", "--shutdown-grace-seconds", "1"
    )  # fmt: skip
    try:
        pods = [router_pod(router.url)]
        assert held_requests(pods) == 0.0  # a router in front, holding nothing

        def client() -> None:
            body = {"model": "m", "prompt": "hi", "max_tokens": 1}
            with contextlib.suppress(httpx.HTTPError):  # the router stops under it at the end
                httpx.post(f"{router.url}/v1/completions", json=body, timeout=60)

        threading.Thread(target=client, daemon=True).start()
        wait_until(lambda: held_requests(pods) == 1.0, 20, "the request held")
        result = step(at_zero(), [], Read(), Memory(), T0, activator_waiting=held_requests(pods))
        assert result.decision.total >= 1
        assert result.decision.reason == "ActivatedFromZero"
        assert result.status is not None and result.status["dedicated"] >= 1
        # A router out of its Service's endpoints (draining, starting) still counts what
        # it holds.
        assert held_requests([router_pod(router.url, ready=False)]) == 1.0
        # A ready router that does not answer is not a queue of zero...
        assert held_requests([router_pod("http://127.0.0.1:9")]) is None
        # ...but routers that are all still starting hold nothing: a new service's first
        # decision, taken before its routers are ready, may keep it at zero.
        assert held_requests([router_pod("http://127.0.0.1:9", ready=False)]) == 0.0
        assert held_requests([]) == 0.0
    finally:
        router.stop()


def test_a_new_service_whose_routers_are_starting_stays_at_zero():
    # Its first decision comes before any router is ready: no engine is started for
    # demand that cannot exist yet (issue 22: it used to keep one for the stabilization
    # window, ~5 minutes).
    fresh = service(
        scaling={"minReplicas": 0, "maxReplicas": 2,
                 "scaleToZero": {"enabled": True, "idleSeconds": 0}},
        capacity={"dedicated": {"min": 0}},
    )  # fmt: skip
    starting = [router_pod("http://127.0.0.1:9", ready=False)]
    result = step(fresh, [], Read(), Memory(), T0, activator_waiting=held_requests(starting))
    assert result.decision.total == 0
    assert result.decision.reason == "ScaledToZero"
