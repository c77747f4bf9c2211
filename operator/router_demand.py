"""The requests a service's routers hold while no replica is ready: the autoscaler's
activator signal (`Observation.activator_waiting`), so a service at zero replicas scales
up on its first request (docs/router.md#the-activator-scale-from-zero).

Each router replica holds its own queue and exports it as the gauge
`infleet:router_held_requests` on its /metrics; the demand is their sum. Routers that do
not answer are left out; when none answers the demand is unknown (None), and the policy
then keeps a replica rather than trust an empty queue it cannot see.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import httpx

from infleet.autoscaler.http_client import shared_client
from infleet.autoscaler.scrape import samples
from infleet.operator.router import ROUTER_PORT

HELD = "infleet:router_held_requests"
TIMEOUT_S = 2.0  # one read; two routers stay well within the 10 s decision period
MAX_BYTES = 1 << 20  # a router's page is a few KB
log = logging.getLogger(__name__)
Fetch = Callable[[str], str]  # URL -> page text; raises httpx.HTTPError or ValueError


def router_urls(pods: Iterable[dict[str, Any]]) -> list[str]:
    """/metrics of each ready router pod with an IP (pods as autoscaler.kube_view.pod_view)."""
    urls = []
    for pod in pods:
        status = pod.get("status") or {}
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
        if ready and status.get("podIP") and not pod["metadata"].get("deletionTimestamp"):
            ports = [
                p["containerPort"]
                for c in (pod.get("spec") or {}).get("containers") or []
                for p in c.get("ports") or []
                if p.get("name") == "http"
            ]
            urls.append(f"http://{status['podIP']}:{(ports or [ROUTER_PORT])[0]}/metrics")
    return urls


def fetch_page(url: str) -> str:
    response = shared_client().get(url, timeout=TIMEOUT_S)
    response.raise_for_status()
    if len(response.content) > MAX_BYTES:
        raise ValueError(f"page over {MAX_BYTES} bytes")
    return response.text


def held_requests(pods: Iterable[dict[str, Any]], fetch: Fetch = fetch_page) -> float | None:
    """The requests the ready routers hold now, summed; None when no router answered."""
    total, answered = 0.0, False
    for url in router_urls(pods):
        try:
            page = samples(fetch(url))
        except (httpx.HTTPError, ValueError) as err:
            log.warning("router metrics %s: %s: %s", url, type(err).__name__, err)
            continue
        if HELD in page:
            total, answered = total + page[HELD], True
    return total if answered else None
