"""One HTTP client for every metrics read of this process.

Building an `httpx.Client` loads the CA bundle into a fresh SSL context (about 45 ms of
CPU here); the operator reads metrics for every InferenceService on every autoscale tick,
so one client per read cost whole cores at 1,000 services. `httpx.Client` is thread-safe
and keeps connections alive, so the operator's workers share this one.
"""

from __future__ import annotations

from functools import cache

import httpx

SCRAPE_WORKERS = 16


@cache
def shared_client() -> httpx.Client:
    # Timeouts are per request (callers pass theirs); the pool is sized for the scrape
    # workers of several timers at once.
    limits = httpx.Limits(max_connections=4 * SCRAPE_WORKERS, max_keepalive_connections=64)
    return httpx.Client(limits=limits)
