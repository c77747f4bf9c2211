"""What the API server offers, read now and then: its version, the Prometheus Operator.

Both decide what is rendered (operator/kube_versions.py, operator/monitoring.py); both
change rarely (an upgrade, an install), so each is cached for `ttl_s`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from kubernetes.client.exceptions import ApiException

from infleet.operator.kube import Kube
from infleet.operator.kube_versions import OLDEST, KubeVersion, parse_version

log = logging.getLogger(__name__)


class Discovery:
    def __init__(self, kube: Kube, ttl_s: float = 300.0) -> None:
        self._kube, self._ttl = kube, ttl_s
        self._cached: dict[str, tuple[float, Any]] = {}

    def _cache(self, what: str, read: Callable[[], Any]) -> Any:
        now = time.monotonic()
        hit = self._cached.get(what)
        if hit and now - hit[0] < self._ttl:
            return hit[1]
        value = read()
        self._cached[what] = (now, value)
        return value

    def prometheus_operator(self) -> bool:
        """Whether ServiceMonitor and PrometheusRule exist."""

        def read() -> bool:
            try:
                fn = self._kube.custom.get_api_resources
                listing = self._kube.call(fn, "monitoring.coreos.com", "v1")
            except ApiException:
                return False
            return {"servicemonitors", "prometheusrules"} <= {r.name for r in listing.resources}

        return self._cache("monitoring", read)

    def leader_worker_set(self) -> bool:
        """Whether the LeaderWorkerSet CRD (leaderworkerset.x-k8s.io/v1) is served."""

        def read() -> bool:
            try:
                fn = self._kube.custom.get_api_resources
                listing = self._kube.call(fn, "leaderworkerset.x-k8s.io", "v1")
            except ApiException:
                return False
            return "leaderworkersets" in {r.name for r in listing.resources}

        return self._cache("leaderworkerset", read)

    def kube_version(self) -> KubeVersion:
        """The API server's version (its /version)."""

        def read() -> KubeVersion:
            info = self._kube.call(self._kube.version.get_code)
            version = parse_version(info.major, info.minor)
            if version < OLDEST:
                log.error(
                    "Kubernetes %s.%s is older than the oldest supported, %s.%s: "
                    "rendering as for %s.%s",
                    *version, *OLDEST, *OLDEST,
                )  # fmt: skip
                return OLDEST
            return version

        return self._cache("version", read)
