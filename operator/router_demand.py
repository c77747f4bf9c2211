"""The requests a service's routers hold while no replica is ready: the autoscaler's
activator signal (`Observation.activator_waiting`), so a service at zero replicas scales
up on its first request (docs/router.md#the-activator-scale-from-zero).

Each router replica holds its own queue and exports it as the gauge
`infleet:router_held_requests` on its /metrics; the demand is their sum over every router
pod with an address, ready or not (a draining router still holds what it admitted).
Routers that do not answer are left out. When none answers, the demand depends on why:
with no router ready it is zero, since a router's Service sends requests only to ready
pods and a router that cannot answer holds nothing (this is every new service: its
first decision comes while its routers start, and must not start a replica for demand
that cannot exist); with a ready router that does not answer it is unknown (None), and
the policy then keeps a replica rather than trust an empty queue it cannot see.
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


def _ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def router_urls(pods: Iterable[dict[str, Any]]) -> list[tuple[str, bool]]:
    """(/metrics URL, ready) of each router pod with an IP (pods as
    autoscaler.kube_view.pod_view)."""
    urls = []
    for pod in pods:
        ip = (pod.get("status") or {}).get("podIP")
        if not ip:
            continue  # not started: it holds nothing
        ports = [
            p["containerPort"]
            for c in (pod.get("spec") or {}).get("containers") or []
            for p in c.get("ports") or []
            if p.get("name") == "http"
        ]
        urls.append((f"http://{ip}:{(ports or [ROUTER_PORT])[0]}/metrics", _ready(pod)))
    return urls


def fetch_page(url: str) -> str:
    response = shared_client().get(url, timeout=TIMEOUT_S)
    response.raise_for_status()
    if len(response.content) > MAX_BYTES:
        raise ValueError(f"page over {MAX_BYTES} bytes")
    return response.text


def held_requests(pods: Iterable[dict[str, Any]], fetch: Fetch = fetch_page) -> float | None:
    """The requests the routers hold now, summed; 0 when no router is ready and none
    answered, None when a ready one exists and none answered (see the module doc)."""
    total, answered, any_ready = 0.0, False, False
    for url, ready in router_urls(pods):
        any_ready = any_ready or ready
        try:
            page = samples(fetch(url))
        except (httpx.HTTPError, ValueError) as err:
            if ready:  # a starting or stopped router refusing is expected, not news
                log.warning("router metrics %s: %s: %s", url, type(err).__name__, err)
            continue
        if HELD in page:
            total, answered = total + page[HELD], True
    if answered:
        return total
    return None if any_ready else 0.0
