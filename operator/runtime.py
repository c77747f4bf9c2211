"""The operator's parts wired together, carried in kopf's memo (no module globals).

kopf watches and fills the caches; the controller's workers reconcile, only while the
elector holds the lease; every write goes through the Kube client's fence.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from infleet.api import API_VERSION
from infleet.api import KIND as SERVICE_KIND
from infleet.autoscaler.prometheus_api import PrometheusSource
from infleet.operator.autoscale import PERIOD_S, Autoscaler
from infleet.operator.cache import Cache, Key, trimmed
from infleet.operator.controller import Controller
from infleet.operator.discovery import Discovery
from infleet.operator.kube import Kube
from infleet.operator.leader import Elector, LeaseTiming
from infleet.operator.lease import LeaseApi
from infleet.operator.metrics import RECONCILE_DURATION, RECONCILES
from infleet.operator.namespaces import NamespaceLabels
from infleet.operator.policy import PlatformPolicy
from infleet.operator.reconcile import reconcile
from infleet.operator.render import RenderOptions
from infleet.operator.report import now_rfc3339
from infleet.operator.router import DEFAULT_ROUTER_IMAGE

log = logging.getLogger(__name__)
KIND = (SERVICE_KIND, API_VERSION)


class Runtime:
    def __init__(
        self,
        kube: Kube,
        lease: LeaseApi,
        timing: LeaseTiming,
        fetcher_image: str,
        engine_images: dict[str, str],
        prometheus: PrometheusSource | None = None,
        platform: PlatformPolicy | None = None,
        router_image: str = DEFAULT_ROUTER_IMAGE,
    ) -> None:
        self.elector = Elector(lease, kube.identity, timing, self.lead, self.follow)
        kube.fence = self.elector.fence
        self.kube, self.fetcher_image, self.engine_images = kube, fetcher_image, engine_images
        self.router_image = router_image
        self.autoscaler = Autoscaler(prometheus, fence=self.elector.fence)
        self.discovery = Discovery(kube)
        self.platform, self.namespaces = platform, NamespaceLabels(kube)
        self.cache = Cache()
        self.controller = Controller(self.reconcile, self.cache.keys, PERIOD_S)
        self._stop = threading.Event()
        self._election = threading.Thread(
            target=self.elector.run, args=(self._stop,), name="leader-election", daemon=True
        )

    def start(self) -> None:
        self.controller.start()
        self._election.start()

    def stop(self) -> None:
        """Stop leading (and hand the lease over), then stop the workers."""
        self._stop.set()
        self._election.join(self.elector.timing.api_timeout_s + 1)
        self.elector.release()
        self.controller.stop()

    def lead(self) -> None:
        self.controller.lead()

    def follow(self) -> None:
        self.controller.follow()
        self.autoscaler.clear()

    def seen(self, key: Key, indices: Mapping[str, Any]) -> None:
        """A watch event concerning service `key` (kopf hands every handler its indices)."""
        if self.cache.fill(indices):
            self.controller.caches_ready()
        self.controller.enqueue(key)

    def options(self, namespace: str) -> RenderOptions:
        labels = None
        if self.platform is not None and self.platform.needs_namespace_labels():
            labels = self.namespaces.labels(namespace)
        return RenderOptions(
            prometheus_operator=self.discovery.prometheus_operator(),
            fetcher_image=self.fetcher_image,
            engine_images=self.engine_images,
            router_image=self.router_image,
            kube_version=self.discovery.kube_version(),
            platform=self.platform,
            namespace_labels=labels,
        )

    def reconcile(self, key: Key) -> None:
        """One reconcile of `key` (a controller worker holds the key)."""
        snap = self.cache.snapshot(key)
        if snap is None:  # deleted: owner references take the children
            self.autoscaler.forget(key)
            return
        started = time.perf_counter()
        outcome = reconcile(snap, self.kube, self.options(key[0]), self.autoscaler)
        RECONCILE_DURATION.observe(time.perf_counter() - started)
        RECONCILES.labels(outcome.result).inc()
        own = self.cache.own_writes
        own.applied(key, outcome.applied)
        if outcome.replaced and outcome.body is not None:
            own.wrote(key, outcome.replaced, trimmed(outcome.body, *KIND))
        now = now_rfc3339()
        for type_, reason, message in outcome.events:
            try:
                self.kube.post_event(outcome.body or snap.parent, type_, reason, message, now)
            except Exception as err:  # an Event is worth a log line, not a retry
                log.warning("%s/%s: Event %s not posted: %s", *key, reason, err)
        if outcome.result == "invalid" and outcome.replaced:  # once, when it turns invalid
            log.warning("%s/%s: %s", *key, outcome.status["conditions"][-1]["message"])
        if outcome.error is not None:
            raise outcome.error  # the controller retries with backoff
