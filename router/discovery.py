"""Replicas from a static list of URLs, kept current by polling each one's /health.

The engine's /health answers 200 when it takes requests and 503 `{"status": "draining"}`
once it drains (SIGTERM, spot notice), so polling it gives readiness and draining
without Kubernetes. On Kubernetes, router/kube_discovery.py reads EndpointSlices instead.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from infleet.router.replicas import Endpoint, ReplicaSet

log = logging.getLogger("infleet.router.discovery")
HEALTH_INTERVAL = 1.0
HEALTH_TIMEOUT = 2.0


async def probe(session: aiohttp.ClientSession, url: str) -> Endpoint:
    """One replica's state from its /health."""
    try:
        timeout = aiohttp.ClientTimeout(total=HEALTH_TIMEOUT)
        async with session.get(url + "/health", timeout=timeout) as resp:
            if resp.status == 200:
                return Endpoint(url, url)
            body = await resp.json(content_type=None)
            draining = isinstance(body, dict) and body.get("status") == "draining"
            return Endpoint(url, url, ready=False, draining=draining)
    except (aiohttp.ClientError, asyncio.TimeoutError, TimeoutError, ValueError):
        return Endpoint(url, url, ready=False)


async def poll_static(
    replicas: ReplicaSet,
    urls: list[str],
    session: aiohttp.ClientSession,
    interval: float = HEALTH_INTERVAL,
) -> None:
    """Forever: probe every URL, then hand the whole list to the replica set."""
    while True:
        found = await asyncio.gather(*(probe(session, url) for url in urls))
        replicas.sync(found)
        await asyncio.sleep(interval)
