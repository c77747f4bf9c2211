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
from infleet.operator.lora_artifact import fetch_files
from infleet.operator.lora_cache import LoRACache, target_of
from infleet.operator.lora_kube import LoRAKube
from infleet.operator.lora_pvc import PvcUploads
from infleet.operator.lora_pvc_kube import PvcKube
from infleet.operator.lora_reconcile import LoRAReconciler
from infleet.operator.lora_store import AdapterStore
from infleet.operator.metrics import RECONCILE_DURATION, RECONCILES
from infleet.operator.namespaces import NamespaceLabels
from infleet.operator.policy import PlatformPolicy
from infleet.operator.reconcile import reconcile
from infleet.operator.render import RenderOptions
from infleet.operator.report import now_rfc3339
from infleet.operator.router import DEFAULT_ROUTER_IMAGE

log = logging.getLogger(__name__)
KIND = (SERVICE_KIND, API_VERSION)
LORA_WORKERS = 4


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
        adapter_store: AdapterStore | None = None,
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
        # The adapter controller: its own keys and workers, the same lease and caches.
        self.lora_cache = LoRACache()
        self.lora = None
        if adapter_store is not None:
            # The pvc:// upload Job runs the operator's image, as the lora-sync sidecar does.
            uploads = PvcUploads(PvcKube(kube), adapter_store, router_image)
            self.lora = LoRAReconciler(
                LoRAKube(kube), adapter_store, fetch_files, self.namespaces.labels, uploads
            )
        self.adapters = Controller(
            self.reconcile_adapter, self.lora_cache.keys, PERIOD_S, workers=LORA_WORKERS
        )
        self._stop = threading.Event()
        self._election = threading.Thread(
            target=self.elector.run, args=(self._stop,), name="leader-election", daemon=True
        )

    def start(self) -> None:
        self.controller.start()
        if self.lora is not None:
            self.adapters.start()
        self._election.start()

    def stop(self) -> None:
        """Stop leading (and hand the lease over), then stop the workers."""
        self._stop.set()
        self._election.join(self.elector.timing.api_timeout_s + 1)
        self.elector.release()
        self.controller.stop()
        self.adapters.stop()

    def lead(self) -> None:
        self.controller.lead()
        self.adapters.lead()

    def follow(self) -> None:
        self.controller.follow()
        self.adapters.follow()
        self.autoscaler.clear()

    def seen(self, key: Key, indices: Mapping[str, Any]) -> None:
        """A watch event concerning service `key` (kopf hands every handler its indices)."""
        self._fill(indices)
        self.controller.enqueue(key)

    def child_deleted(self, key: Key, kind: str, meta: dict[str, Any]) -> None:
        """The watch saw a child of service `key` deleted (before `seen` enqueues `key`)."""
        self.cache.own_writes.deleted(key, kind, meta)

    def _fill(self, indices: Mapping[str, Any]) -> None:
        if self.cache.fill(indices):
            self.controller.caches_ready()
        if self.lora_cache.fill(indices):
            self.adapters.caches_ready()

    def adapter_seen(self, key: Key, body: dict[str, Any], indices: Mapping[str, Any]) -> None:
        """A LoRAAdapter event: it, and the other adapters of its service (a freed served
        name, a changed set), are reconciled."""
        self._fill(indices)
        self.adapters.enqueue(key)
        target = target_of(body)
        if target is not None:
            for other in self.lora_cache.adapters_of(target):
                self.adapters.enqueue(other)

    def service_pods_seen(self, service: Key, indices: Mapping[str, Any]) -> None:
        """A pod of `service` changed: its adapters are pushed to any new ready replica."""
        self._fill(indices)
        for key in self.lora_cache.adapters_of(service):
            self.adapters.enqueue(key)

    def namespace_seen(self, namespace: str, indices: Mapping[str, Any]) -> None:
        """A namespace came, went or was relabelled: services that admit tenants by label
        list their tenants again (a key given or revoked), and the namespace's adapters are
        admitted again."""
        self._fill(indices)
        self.namespaces.forget(namespace)
        for key in self.lora_cache.selector_services():
            self.controller.enqueue(key)
        adapters = self.lora_cache.keys()
        for key in adapters:
            if key[0] == namespace:
                self.adapters.enqueue(key)

    def reconcile_adapter(self, key: Key) -> None:
        """One reconcile of adapter `key` (a controller worker holds the key)."""
        assert self.lora is not None  # its workers run only with a store
        result = self.lora.reconcile(key, self.lora_cache.view(key), now_rfc3339())
        for type_, reason, message in result.events:
            try:
                about = result.body or self.lora_cache.view(key).adapter
                if about is not None:
                    self.kube.post_event(about, type_, reason, message, now_rfc3339())
            except Exception as err:  # an Event is worth a log line, not a retry
                log.warning("%s/%s: Event %s not posted: %s", *key, reason, err)
        if result.requeue_after is not None:
            self.adapters.queue.add_after(key, result.requeue_after)

    def options(self, namespace: str) -> RenderOptions:
        labels = None
        if self.platform is not None and self.platform.needs_namespace_labels():
            labels = self.namespaces.labels(namespace)
        return RenderOptions(
            prometheus_operator=self.discovery.prometheus_operator(),
            leader_worker_set=self.discovery.leader_worker_set(),
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
            degraded = next(c for c in outcome.status["conditions"] if c["type"] == "Degraded")
            log.warning("%s/%s: %s", *key, degraded["message"])
        if outcome.error is not None:
            raise outcome.error  # the controller retries with backoff
