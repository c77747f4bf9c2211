"""Metrics source: a Prometheus HTTP API (`/api/v1/query`) instead of scraping pods.

The engines' series carry `namespace`, `inferenceservice` and `pool` labels (the operator's
ServiceMonitor relabels them so, docs/contracts.md) plus the pod's name (`pod`, as the
Prometheus Operator's Kubernetes discovery names it). One instant query per signal sums
each pod's series over their other labels; where an engine has had two names for a
signal, PromQL `or` takes the first that exists. A name with a colon is also tried with
underscores: prometheus_client 0.26 writes `vllm:x` as `vllm_x` when Prometheus asks for
OpenMetrics (content negotiation), so a vLLM or SGLang pod scraped that way stores it so.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from infleet.autoscaler.engines import COUNTED, FIELDS, names_for
from infleet.autoscaler.health import MetricsFailure
from infleet.autoscaler.http_client import shared_client
from infleet.autoscaler.view import ReplicaMetrics

TTFT_WINDOW = "2m"


class QueryFailed(ValueError):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status

    @property
    def permanent(self) -> bool:
        """Refused for good (auth, a path that is not Prometheus): retrying won't help."""
        return self.status in (401, 403, 404)


def _label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


@dataclass(frozen=True, slots=True)
class PrometheusSource:
    url: str  # e.g. http://prometheus-operated.monitoring:9090
    pod_label: str = "pod"
    timeout_s: float = 5.0

    def query_for(self, kind: str, field: str, namespace: str, service: str) -> str | None:
        names = getattr(names_for(kind), field)
        if not names:
            return None
        selector = (
            f'namespace="{_label_value(namespace)}",inferenceservice="{_label_value(service)}"'
        )
        by = f"{self.pod_label}, pool"
        spelled = [n for name in names for n in dict.fromkeys((name, name.replace(":", "_")))]
        return " or ".join(f"sum by ({by}) ({name}{{{selector}}})" for name in spelled)

    def fetch(self, kind: str, namespace: str, service: str) -> list[ReplicaMetrics]:
        """One view per pod that reports a waiting or running series."""
        values: dict[tuple[str, str], dict[str, float]] = {}
        for field in FIELDS:
            query = self.query_for(kind, field, namespace, service)
            if query is None:
                continue
            for series in self._query(query):
                labels = series["metric"]
                key = (labels.get(self.pod_label, ""), labels.get("pool", ""))
                values.setdefault(key, {})[field] = float(series["value"][1])
        return [
            ReplicaMetrics(
                pod=pod,
                pool=pool,
                waiting=v.get("waiting", 0.0),
                running=v.get("running", 0.0),
                **{field: v.get(field) for field in COUNTED},
            )
            for (pod, pool), v in sorted(values.items())
            if pod and ("waiting" in v or "running" in v)
        ]

    def read(
        self, kind: str, namespace: str, service: str
    ) -> tuple[list[ReplicaMetrics], list[MetricsFailure]]:
        """`fetch`, with its failure as a MetricsFailure for the counters and the
        condition instead of an exception."""
        try:
            return self.fetch(kind, namespace, service), []
        except httpx.TimeoutException as err:
            failure = MetricsFailure(
                "prometheus", self.url, "Timeout", f"{type(err).__name__}: {err}"
            )
        except httpx.HTTPError as err:
            failure = MetricsFailure(
                "prometheus", self.url, "ConnectError", f"{type(err).__name__}: {err}"
            )
        except QueryFailed as err:
            reason = "Rejected" if err.permanent else "QueryFailed"
            failure = MetricsFailure("prometheus", self.url, reason, str(err), err.permanent)
        return [], [failure]

    def ttft_p95(self, kind: str, namespace: str, service: str) -> float | None:
        """The service's p95 TTFT over the last two minutes, from the engines' histogram
        (None: the engine exports none, no requests, or Prometheus does not answer): the
        evidence a fleet whose replicas cannot be read may still grow on."""
        name = names_for(kind).ttft_histogram
        if name is None:
            return None
        selector = (
            f'namespace="{_label_value(namespace)}",inferenceservice="{_label_value(service)}"'
        )
        spelled = dict.fromkeys((name, name.replace(":", "_")))
        rates = " or ".join(
            f"sum by (le) (rate({n}_bucket{{{selector}}}[{TTFT_WINDOW}]))" for n in spelled
        )
        try:
            result = self._query(f"histogram_quantile(0.95, {rates})")
        except (httpx.HTTPError, QueryFailed):
            return None
        values = [float(r["value"][1]) for r in result]
        values = [v for v in values if v == v and v != float("inf")]
        return max(values) if values else None

    def _query(self, query: str) -> list[dict]:
        url = self.url.rstrip("/") + "/api/v1/query"
        response = shared_client().get(url, params={"query": query}, timeout=self.timeout_s)
        try:
            body = response.json() if response.content else {}
        except ValueError:
            body = {}
        if response.status_code != 200 or body.get("status") != "success":
            error = body.get("error") or response.text[:200]
            raise QueryFailed(
                f"Prometheus query {query!r} failed: HTTP {response.status_code}: {error}",
                response.status_code,
            )
        return body["data"]["result"]
