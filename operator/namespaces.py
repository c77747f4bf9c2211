"""Namespace labels for the platform policy's namespace selectors, read now and then.

Only when a rule selects namespaces by label; tenants cannot change a namespace's labels
(the platform owns namespaces), so a rule cannot be picked by the tenant it governs.
"""

from __future__ import annotations

import time

from infleet.operator.kube import Kube

TTL_S = 60.0  # a relabelled namespace is seen within a minute


class NamespaceLabels:
    def __init__(self, kube: Kube, ttl_s: float = TTL_S) -> None:
        self._kube, self._ttl = kube, ttl_s
        self._cached: dict[str, tuple[float, dict[str, str]]] = {}

    def forget(self, namespace: str) -> None:
        """Its labels changed (a namespace event): read them again on the next look."""
        self._cached.pop(namespace, None)

    def labels(self, namespace: str) -> dict[str, str]:
        now = time.monotonic()
        hit = self._cached.get(namespace)
        if hit and now - hit[0] < self._ttl:
            return hit[1]
        found = self._kube.read(self._kube.core.read_namespace, namespace)
        labels = dict(((found or {}).get("metadata") or {}).get("labels") or {})
        self._cached[namespace] = (now, labels)
        return labels
