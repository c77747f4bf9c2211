"""Metrics source (the default): scrape each replica's `/metrics` directly.

Prometheus text format parsed with prometheus_client's parser; every sample is summed
over its label sets (a replica serves one model, and vLLM's
`request_success_total{finished_reason}` summed is all finished requests). A pod that
does not answer is reported, not guessed: it simply has no metrics this round.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

from infleet.autoscaler.engines import replica_metrics
from infleet.autoscaler.http_client import scrape_pool, shared_client
from infleet.autoscaler.view import ReplicaMetrics


@dataclass(frozen=True, slots=True)
class ScrapeTarget:
    pod: str
    pool: str
    url: str  # http://POD_IP:PORT/metrics


def samples(text: str) -> dict[str, float]:
    """Sample name -> value summed over label sets (`_created` timestamps skipped)."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            out[sample.name] = out.get(sample.name, 0.0) + float(sample.value)
    return out


def scrape(
    targets: Iterable[ScrapeTarget], kind: str, timeout_s: float = 2.0
) -> tuple[list[ReplicaMetrics], list[str]]:
    """Every target's view, and one error line per target that failed."""
    targets = list(targets)
    if not targets:
        return [], []

    def one(target: ScrapeTarget) -> ReplicaMetrics | str:
        try:
            response = shared_client().get(target.url, timeout=timeout_s)
            response.raise_for_status()
            return replica_metrics(kind, target.pod, target.pool, samples(response.text))
        except (httpx.HTTPError, ValueError) as err:
            return f"{target.pod}: {type(err).__name__}: {err}"

    results = list(scrape_pool().map(one, targets))
    metrics = [r for r in results if isinstance(r, ReplicaMetrics)]
    errors = [r for r in results if isinstance(r, str)]
    return metrics, errors
