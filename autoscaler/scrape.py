"""Metrics source (the default): read each replica's `/metrics` directly, services isolated.

Prometheus text format parsed with prometheus_client's parser; every sample is summed
over its label sets (a replica serves one model, and vLLM's
`request_success_total{finished_reason}` summed is all finished requests).

One `ScrapePool` serves every InferenceService of the process, and keeps them apart:
- each service reads at most `per_service` targets at once, so black-holed pods of one
  service hold a few of the pool's threads, never all of them;
- every read has a timeout and a body-size limit, and each service a deadline for all
  its reads (targets not reached by then are reported, not waited for);
- a target that fails (connection refused or reset, timeout, 5xx, 408/429, a page too
  large or not an engine's) is retried with exponential backoff instead of every tick;
- a 4xx that will not change by retrying (401, 403, 404, ...) is a permanent state the
  operator surfaces (`health.metrics_condition`): asked again only every
  `backoff_max_s`, or at once when the pod's address changes.
A pod that does not answer is reported, never guessed: it has no metrics this round, and
the policy counts it as unknown, not idle.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families

from infleet.autoscaler.engines import replica_metrics
from infleet.autoscaler.health import MetricsFailure
from infleet.autoscaler.http_client import SCRAPE_WORKERS, shared_client
from infleet.autoscaler.view import ReplicaMetrics

RETRYABLE_4XX = (408, 429)


@dataclass(frozen=True, slots=True)
class ScrapeTarget:
    pod: str
    pool: str
    url: str  # http://POD_IP:PORT/metrics


@dataclass(frozen=True, slots=True)
class ScrapeLimits:
    timeout_s: float = 2.0  # one read, connect to last byte
    max_body_bytes: int = 4 << 20  # an engine's page is 10-200 KB
    per_service: int = 4  # reads of one service at once
    deadline_s: float = 6.0  # all reads of one service, within a 10 s decision period
    backoff_s: float = 10.0  # after a first failure; doubles per failure
    backoff_max_s: float = 300.0


@dataclass(slots=True)
class _Health:
    url: str
    failure: MetricsFailure
    failures: int
    retry_at: float


@dataclass(slots=True)
class ScrapeResult:
    metrics: list[ReplicaMetrics] = field(default_factory=list)
    failures: list[MetricsFailure] = field(default_factory=list)  # reads tried that failed
    waiting: list[MetricsFailure] = field(default_factory=list)  # not tried: in backoff


class _Failed(Exception):
    def __init__(self, reason: str, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.reason, self.permanent = reason, permanent


def samples(text: str) -> dict[str, float]:
    """Sample name -> value summed over label sets (`_created` timestamps skipped)."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            out[sample.name] = out.get(sample.name, 0.0) + float(sample.value)
    return out


def _fetch(client: httpx.Client, url: str, limits: ScrapeLimits) -> str:
    """The page, or _Failed: read in chunks so a huge or trickling page is cut off."""
    started = time.monotonic()
    try:
        with client.stream("GET", url, timeout=limits.timeout_s) as response:
            if response.status_code >= 400:
                code = response.status_code
                permanent = code < 500 and code not in RETRYABLE_4XX
                reason = "Rejected" if permanent else "HTTPError"
                raise _Failed(reason, f"HTTP {code} {response.reason_phrase}", permanent)
            declared = int(response.headers.get("content-length") or 0)
            if declared > limits.max_body_bytes:
                raise _Failed(
                    "TooLarge", f"{declared} bytes declared, limit {limits.max_body_bytes}"
                )
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > limits.max_body_bytes:
                    raise _Failed("TooLarge", f"over {limits.max_body_bytes} bytes")
                if time.monotonic() - started > limits.timeout_s:
                    raise _Failed("Timeout", f"page not read within {limits.timeout_s:g}s")
            return body.decode("utf-8", errors="replace")
    except httpx.TimeoutException as err:
        raise _Failed("Timeout", f"{type(err).__name__}: {err}") from None
    except httpx.HTTPError as err:
        raise _Failed("ConnectError", f"{type(err).__name__}: {err}") from None


class ScrapePool:
    def __init__(
        self,
        limits: ScrapeLimits | None = None,
        workers: int = SCRAPE_WORKERS,
        client: httpx.Client | None = None,
    ) -> None:
        self.limits = limits or ScrapeLimits()
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="infleet-scrape")
        self._client = client
        self._health: dict[tuple[str, str], _Health] = {}  # (service, pod) -> last failure
        self._lock = threading.Lock()

    def _read(self, target: ScrapeTarget, kind: str) -> ReplicaMetrics:
        client = self._client or shared_client()
        text = _fetch(client, target.url, self.limits)
        try:
            return replica_metrics(kind, target.pod, target.pool, samples(text))
        except ValueError as err:
            raise _Failed("BadMetrics", str(err)) from None

    def scrape(
        self, service: str, targets: Iterable[ScrapeTarget], kind: str, now: float
    ) -> ScrapeResult:
        """Every target's view, the failures, and the targets left alone while they back
        off. `now` is the caller's clock (for the backoff); `service` keys the isolation."""
        result, due = ScrapeResult(), []
        targets = list(targets)
        with self._lock:
            listed = {(service, t.pod) for t in targets}
            for key in [k for k in self._health if k[0] == service and k not in listed]:
                del self._health[key]  # pods gone: forget them
            for t in targets:
                health = self._health.get((service, t.pod))
                if health is not None and health.url == t.url and now < health.retry_at:
                    result.waiting.append(health.failure)
                else:
                    due.append(t)
        deadline = time.monotonic() + self.limits.deadline_s
        running: dict[Future, ScrapeTarget] = {}
        queue = list(reversed(due))
        while queue or running:
            while queue and len(running) < self.limits.per_service:
                target = queue.pop()
                running[self._executor.submit(self._read, target, kind)] = target
            left = deadline - time.monotonic()
            done, _ = wait(list(running), timeout=max(left, 0.0), return_when=FIRST_COMPLETED)
            for future in done:
                target = running.pop(future)
                try:
                    result.metrics.append(future.result())
                    with self._lock:
                        self._health.pop((service, target.pod), None)
                except _Failed as err:
                    result.failures.append(self._failed(service, target, err, now))
            if not done and time.monotonic() >= deadline:
                late = [*running.values(), *reversed(queue)]
                for target in late:
                    message = f"not read within the service's {self.limits.deadline_s:g}s"
                    result.failures.append(
                        self._failed(service, target, _Failed("Timeout", message), now)
                    )
                for future in running:
                    future.cancel()  # a running read ends by its own timeout
                break
        order = {t.pod: i for i, t in enumerate(targets)}  # as listed, not as finished
        result.metrics.sort(key=lambda m: order[m.pod])
        result.failures.sort(key=lambda f: order[f.target])
        return result

    def _failed(
        self, service: str, target: ScrapeTarget, err: _Failed, now: float
    ) -> MetricsFailure:
        with self._lock:
            before = self._health.get((service, target.pod))
            if before is not None and before.url != target.url:
                before = None
            count = 1 if before is None else before.failures + 1
            since = now if before is None else before.failure.since
            failure = MetricsFailure(
                "scrape", target.pod, err.reason, str(err), err.permanent, since
            )
            limits = self.limits
            delay = limits.backoff_max_s if err.permanent else limits.backoff_s * 2 ** (count - 1)
            self._health[(service, target.pod)] = _Health(
                target.url, failure, count, now + min(delay, limits.backoff_max_s)
            )
        return failure

    def forget(self, service: str) -> None:
        """Drop a deleted service's backoff state."""
        with self._lock:
            for key in [k for k in self._health if k[0] == service]:
                del self._health[key]
