"""What a pod asks of its node: its containers' resource requests, as numbers."""

from __future__ import annotations

from infleet.api.quantity import parse_quantity


def pod_requests(pod: dict) -> dict[str, float]:
    """Summed container requests (limits stand in where requests are unset, as the
    apiserver defaults them); init containers count as their maximum."""
    spec = pod.get("spec", {})

    def of(c: dict) -> dict[str, float]:
        res = c.get("resources") or {}
        merged = {**(res.get("limits") or {}), **(res.get("requests") or {})}
        return {k: parse_quantity(v) for k, v in merged.items()}

    total: dict[str, float] = {}
    for c in spec.get("containers") or []:
        for k, v in of(c).items():
            total[k] = total.get(k, 0.0) + v
    for c in spec.get("initContainers") or []:
        for k, v in of(c).items():
            total[k] = max(total.get(k, 0.0), v)
    total["pods"] = 1.0
    return total
