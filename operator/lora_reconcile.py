"""One reconcile of a LoRAAdapter key: admit -> fetch -> set -> push -> status.

Starts from a `LoRAView` of the operator's caches (operator/lora_cache.py). The decisions
are pure (operator/lora_admission.py, operator/lora_status.py); this is the I/O around
them, in an order that keeps a refused adapter from touching anything:

1. admission (namespace, rank, served name); a refusal removes the adapter's own entry
   from any set it was in (and unloads it), nothing else;
2. the artifact, fetched once per generation with the tenant's credentials, checked and
   stored (operator/lora_artifact.py, operator/lora_store.py); a pvc:// one is uploaded
   by a Job in the tenant's namespace (operator/lora_pvc.py), `Fetching` meanwhile;
3. a new entry is first loaded on one ready replica, which checks it against the base
   model it serves: a refusal there is BaseModelMismatch and the set is not changed;
4. the entry goes into the set (read by every replica that starts), then to every ready
   replica that does not list it;
5. status: loadedReplicas counts the ready replicas whose /v1/models lists it.

A deleted adapter (no finalizer: its service may be in another namespace, where an owner
reference cannot reach) is found by its key in the sets and removed from them and from
every replica.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from infleet.api import InferenceService
from infleet.api.lora_adapter import LoRAAdapter
from infleet.api.lora_set import Entry, entries
from infleet.operator.admin_secret import admin_key
from infleet.operator.errors import describe
from infleet.operator.lora_admission import admit, rank_problem
from infleet.operator.lora_artifact import Fetched, FetchFailed, check
from infleet.operator.lora_engines import EngineClient, LoadRefused, Replica, ready_replicas
from infleet.operator.lora_kube import LoRAKube
from infleet.operator.lora_pvc import PvcUploads, Uploading
from infleet.operator.lora_set import entry_key, render_set
from infleet.operator.lora_status import Observed, adapter_status, changed, events
from infleet.operator.lora_store import AdapterStore
from infleet.operator.status import Problem

log = logging.getLogger(__name__)
Obj = dict[str, Any]
Key = tuple[str, str]
LOADING_RETRY_S = 2.0  # while a replica has yet to list the adapter
FAILED_RETRY_S = 30.0  # an unreachable artifact, tried again


@dataclass(frozen=True, slots=True)
class LoRAView:
    """What one adapter reconcile starts from, as the caches have it."""

    adapter: Obj | None  # None: deleted
    services: dict[Key, Obj]  # every InferenceService
    adapters: list[Obj]  # every LoRAAdapter
    sets: dict[Key, Obj]  # service key -> its set ConfigMap
    pods: Callable[[Key], list[Obj]]  # a service's pods (pod_view)


@dataclass(slots=True)
class Result:
    status: Obj | None = None
    events: list[tuple[str, str, str]] = field(default_factory=list)
    body: Obj | None = None  # the adapter as written
    requeue_after: float | None = None


@dataclass(frozen=True, slots=True)
class _Fetch:
    generation: int | None
    uri: str
    fetched: Fetched


FilesFetcher = Callable[[str, dict[str, str] | None], dict[str, bytes]]  # (uri, Secret data)


class LoRAReconciler:
    def __init__(
        self,
        lkube: LoRAKube,
        store: AdapterStore,
        fetch_files: FilesFetcher,
        namespace_labels: Callable[[str], dict[str, str]],
        pvc: PvcUploads,
    ) -> None:
        self.lkube, self.store, self.fetch_files, self.pvc = lkube, store, fetch_files, pvc
        self.namespace_labels = namespace_labels
        self._fetched: dict[Key, _Fetch] = {}
        self._guard = threading.Lock()

    # -- the reconcile ------------------------------------------------------------
    def reconcile(self, key: Key, view: LoRAView, now: str) -> Result:
        body = view.adapter
        if body is None or body["metadata"].get("deletionTimestamp"):
            for svc_key in self._sets_holding(key, view):
                self._remove(key, view, svc_key)
            with self._guard:
                self._fetched.pop(key, None)
            self.pvc.forget(key)
            return Result()
        try:
            adapter = LoRAAdapter.model_validate(body)
        except ValidationError as err:
            for svc_key in self._sets_holding(key, view):
                self._remove(key, view, svc_key)
            obs = Observed(body["metadata"].get("generation"), None, None,
                           Problem("InvalidSpec", describe(err)))  # fmt: skip
            return self._report(key, body, obs, now)
        target = adapter.service_key()
        for svc_key in self._sets_holding(key, view):
            if svc_key != target:  # its spec now names another service
                self._remove(key, view, svc_key)
        isvc = self._service(view.services.get(target))
        problem = self._admission(adapter, isvc, view)
        fetched: Fetched | None = None
        fetching: str | None = None
        if problem is None:
            got = self._artifact(key, adapter, body)
            if isinstance(got, Uploading):
                fetching = got.message
            else:
                fetched, problem = got
        if problem is None and fetched is not None and isvc is not None:
            problem = rank_problem(fetched.rank, isvc.spec.engine.lora.max_rank)
        replicas = ready_replicas(view.pods(target)) if isvc is not None else []
        loaded = 0
        if problem is None and fetched is not None:
            problem, loaded = self._deliver(key, adapter, fetched, view, replicas)
        if problem is not None and target in self._sets_holding(key, view):
            self._remove(key, view, target)
        obs = Observed(
            generation=adapter.metadata.get("generation"),
            service=f"{target[0]}/{target[1]}",
            served_name=adapter.served_name(),
            problem=problem,
            rank=fetched.rank if fetched else None,
            checksum=fetched.packed.checksum if fetched else None,
            size=fetched.packed.size if fetched else None,
            replicas=len(replicas),
            loaded=loaded,
            fetching=fetching,
        )
        result = self._report(key, body, obs, now)
        if problem is None and (fetching is not None or loaded < len(replicas)):
            result.requeue_after = LOADING_RETRY_S
        elif problem is not None and problem.reason == "ArtifactUnreachable":
            result.requeue_after = FAILED_RETRY_S
        return result

    # -- steps --------------------------------------------------------------------
    @staticmethod
    def _service(body: Obj | None) -> InferenceService | None:
        if body is None:
            return None
        try:
            return InferenceService.model_validate(body)
        except ValidationError:
            return None  # its own reconcile reports it; to adapters it is not there

    def _labels(self, isvc: InferenceService | None, tenant: str) -> dict[str, str] | None:
        if isvc is None or isvc.spec.engine.lora.namespace_selector is None:
            return None
        return self.namespace_labels(tenant)

    def _admission(
        self, adapter: LoRAAdapter, isvc: InferenceService | None, view: LoRAView
    ) -> Problem | None:
        target, me = adapter.service_key(), (adapter.namespace, adapter.name)
        peers = []
        for body in view.adapters:
            try:
                peer = LoRAAdapter.model_validate(body)
            except ValidationError:
                continue
            if (peer.namespace, peer.name) == me or peer.service_key() != target:
                continue
            # A peer refused for its namespace or rank holds no name.
            if admit(peer, isvc, [], self._labels(isvc, peer.namespace)) is None:
                peers.append(peer)
        return admit(adapter, isvc, peers, self._labels(isvc, adapter.namespace))

    def _artifact(
        self, key: Key, adapter: LoRAAdapter, body: Obj
    ) -> tuple[Fetched | None, Problem | None] | Uploading:
        generation = adapter.metadata.get("generation")
        with self._guard:
            known = self._fetched.get(key)
        if (
            known is not None
            and (known.generation, known.uri) == (generation, adapter.spec.uri)
            and self.store.has(known.fetched.packed.digest)
        ):
            return known.fetched, None
        try:
            if adapter.spec.uri.startswith("pvc://"):
                got = self.pvc.artifact(key, body)
                if isinstance(got, Uploading):
                    return got
                fetched = got
            else:
                fetched = self._fetch(adapter)
        except FetchFailed as err:
            return None, err.problem
        self.store.put(fetched.packed)
        with self._guard:
            self._fetched[key] = _Fetch(generation, adapter.spec.uri, fetched)
        return fetched, None

    def _fetch(self, adapter: LoRAAdapter) -> Fetched:
        """From a URI the operator reads itself, with the tenant's credentials."""
        secret = None
        ref = adapter.spec.credentials_secret_ref
        if ref is not None:
            secret = self.lkube.secret_data(adapter.namespace, ref.name)
            if secret is None:
                raise FetchFailed(
                    "ArtifactUnreachable",
                    f"credentialsSecretRef: Secret {adapter.namespace}/{ref.name} not found",
                )
        files = self.fetch_files(adapter.spec.uri, secret)
        return check(files)

    def _deliver(
        self,
        key: Key,
        adapter: LoRAAdapter,
        fetched: Fetched,
        view: LoRAView,
        replicas: list[Replica],
    ) -> tuple[Problem | None, int]:
        target = adapter.service_key()
        service = view.services[target]
        entry = Entry(
            adapter.served_name(),
            self.store.url(fetched.packed.digest),
            fetched.packed.digest,
            adapter.namespace,
        )
        ekey = entry_key(*key)
        current = entries(view.sets.get(target)).get(ekey)
        client = EngineClient(admin_key(self.lkube.kube, service, create=True))
        try:
            listed = {r: client.adapters(r) for r in replicas}
            if current is not None and current.served_name != entry.served_name:
                for r in replicas:  # renamed: the old name goes
                    client.unload(r, current.served_name)
            if current != entry:
                first = next((r for r in replicas if listed[r] is not None), None)
                if first is not None:
                    try:
                        if self._push(client, first, entry, listed[first] or {}):
                            listed[first] = {entry.served_name: entry.url}
                    except LoadRefused as err:
                        return Problem("BaseModelMismatch", str(err)), 0
                self.lkube.patch_set(service, ekey, entry.to_json(), render_set(service))
            loaded = 0
            for r in replicas:
                have = listed[r]
                if have is None:
                    continue
                try:
                    if self._push(client, r, entry, have):
                        loaded += 1
                except LoadRefused as err:
                    # In the set before any replica could check it (none was ready): the
                    # caller takes it out again.
                    return Problem("BaseModelMismatch", str(err)), loaded
            return None, loaded
        finally:
            client.close()

    @staticmethod
    def _push(client: EngineClient, replica: Replica, entry: Entry, have: dict[str, str]) -> bool:
        """Makes `replica` serve `entry`; True when it does."""
        root = have.get(entry.served_name)
        if root is not None and root.endswith(f"{entry.sha256}.tar"):
            return True
        if root is not None:  # another artifact under that name: replaced
            client.unload(replica, entry.served_name)
        return client.load(replica, entry.served_name, entry.url, entry.tenant)

    def _sets_holding(self, key: Key, view: LoRAView) -> list[Key]:
        ekey = entry_key(*key)
        return [svc for svc, cm in view.sets.items() if ekey in (cm.get("data") or {})]

    def _remove(self, key: Key, view: LoRAView, svc_key: Key) -> None:
        """Takes the adapter out of service `svc_key`: off its set, then off every replica."""
        service = view.services.get(svc_key)
        old = entries(view.sets.get(svc_key)).get(entry_key(*key))
        if service is None:
            return  # the service is gone, and its set with it (owner reference)
        self.lkube.patch_set(service, entry_key(*key), None, render_set(service))
        if old is None:
            return
        client = EngineClient(admin_key(self.lkube.kube, service, create=False))
        try:
            for replica in ready_replicas(view.pods(svc_key)):
                client.unload(replica, old.served_name)
        finally:
            client.close()

    def _report(self, key: Key, body: Obj, obs: Observed, now: str) -> Result:
        old = body.get("status") or {}
        status = adapter_status(old, obs, now)
        if not changed(old, status):
            return Result(status, [], body)
        written = self.lkube.patch_adapter_status(*key, status)
        return Result(status, events(old, status), written)
