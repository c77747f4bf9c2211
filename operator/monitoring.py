"""ServiceMonitor and PrometheusRule children (only where the Prometheus Operator runs).

The PrometheusRule records each engine's own latency and queue series under one infleet
name per service, so the chart's static alerts serve every engine kind alike.
"""

from __future__ import annotations

import re
from typing import Any

from infleet.autoscaler.engines import names_for
from infleet.operator.engines import EngineProfile
from infleet.operator.names import POOL_LABEL, SERVICE_LABEL

MONITORING_API = "monitoring.coreos.com/v1"
# Recorded series (labels: namespace, inferenceservice).
TTFT_P95 = "infleet:time_to_first_token_seconds:p95_5m"
ITL_P95 = "infleet:inter_token_latency_seconds:p95_5m"
QUEUE = "infleet:num_requests_waiting:sum"


def _meta(label: str) -> str:
    """A pod label as Prometheus' Kubernetes discovery names it (non-word chars -> _)."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", label)


def render_service_monitor(meta: dict[str, Any], name: str) -> dict[str, Any]:
    return {
        "apiVersion": MONITORING_API,
        "kind": "ServiceMonitor",
        "metadata": meta,
        "spec": {
            "selector": {"matchLabels": {SERVICE_LABEL: name}},
            "endpoints": [
                {
                    "port": "http",
                    "path": "/metrics",
                    "interval": "15s",
                    # Every engine series carries its service and pool, whatever the engine.
                    "relabelings": [
                        {
                            "sourceLabels": [f"__meta_kubernetes_pod_label_{_meta(label)}"],
                            "targetLabel": target,
                        }
                        for label, target in (
                            (SERVICE_LABEL, "inferenceservice"),
                            (POOL_LABEL, "pool"),
                        )
                    ],
                }
            ],
        },
    }


def recording_rules(namespace: str, name: str, profile: EngineProfile) -> list[dict[str, Any]]:
    match = f'{{namespace="{namespace}", inferenceservice="{name}"}}'
    labels = {"inferenceservice": name}
    rules = []
    names = names_for(profile.kind)
    for record, histogram in ((TTFT_P95, names.ttft_histogram), (ITL_P95, names.itl_histogram)):
        if histogram is None:
            continue  # the engine exports no such histogram
        expr = (
            "histogram_quantile(0.95, sum by (namespace, le) "
            f"(rate({histogram}_bucket{match}[5m])))"
        )
        rules.append({"record": record, "expr": expr, "labels": labels})
    queue = f"sum by (namespace) ({names.waiting[0]}{match})"
    rules.append({"record": QUEUE, "expr": queue, "labels": labels})
    return rules


def render_prometheus_rule(
    meta: dict[str, Any], namespace: str, name: str, profile: EngineProfile
) -> dict[str, Any]:
    group = {
        "name": f"infleet.{namespace}.{name}",
        "rules": recording_rules(namespace, name, profile),
    }
    return {
        "apiVersion": MONITORING_API,
        "kind": "PrometheusRule",
        "metadata": meta,
        "spec": {"groups": [group]},
    }
