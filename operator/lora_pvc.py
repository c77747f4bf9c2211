"""A pvc:// adapter's artifact: the upload Job's life, seen from the adapter's reconcile.

Each reconcile of a pvc:// adapter asks `PvcUploads.artifact`, which answers at once:

- the checked artifact, once the store received it under this generation's token;
- `Uploading` while the Job runs (the reconcile reports `Ready=False, Fetching` and looks
  again shortly);
- FetchFailed: `ArtifactUnreachable` naming the claim when it does not exist, or with the
  Job's reason and the uploader's message when the Job failed; `InvalidAdapter` when the
  store refused what it sent.

A token lives only in this operator's memory (as a hash, operator/lora_upload.py), so a
Job without a live token here (this operator restarted, or another replica became the
leader) is deleted and made again with a new one. A failure is remembered for
FAILED_RETRY_S before a new Job tries again (the tenant may fix the claim's files without
touching the adapter). Once received, the Job and its Secret are deleted: the token is
spent, and the tenant's namespace keeps nothing of it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from infleet.operator.lora_artifact import Fetched, FetchFailed
from infleet.operator.lora_pvc_job import (
    PvcSource,
    PvcUriError,
    parse_pvc_uri,
    render_upload_job,
    render_upload_secret,
    upload_name,
)
from infleet.operator.lora_pvc_kube import PvcKube
from infleet.operator.lora_store import AdapterStore
from infleet.operator.status import Problem

Key = tuple[str, str]
Obj = dict[str, Any]
FAILED_RETRY_S = 30.0


@dataclass(frozen=True, slots=True)
class Uploading:
    message: str


@dataclass(frozen=True, slots=True)
class _Failure:
    generation: int | None
    problem: Problem
    at: float


class PvcUploads:
    def __init__(self, kube: PvcKube, store: AdapterStore, image: str) -> None:
        self.kube, self.store, self.image = kube, store, image
        self._failures: dict[Key, _Failure] = {}
        self._guard = threading.Lock()

    def forget(self, key: Key) -> None:
        """The adapter is gone: its token dies (its Job and Secret go with their owner)."""
        self.store.uploads.revoke(key)
        with self._guard:
            self._failures.pop(key, None)

    def artifact(self, key: Key, body: Obj) -> Fetched | Uploading:
        ns, generation = key[0], body["metadata"].get("generation")
        try:
            source = parse_pvc_uri(body["spec"]["uri"])
        except PvcUriError as err:
            raise FetchFailed("ArtifactUnreachable", str(err)) from None
        received = self.store.uploads.received(key, generation)
        if received is not None:
            if received.problem is not None:
                raise FetchFailed(received.problem.reason, received.problem.message)
            assert received.fetched is not None
            self.kube.delete(ns, upload_name(key[1], generation))  # the token is spent
            return received.fetched
        with self._guard:
            failure = self._failures.get(key)
        if (
            failure is not None
            and failure.generation == generation
            and time.monotonic() - failure.at < FAILED_RETRY_S
        ):
            raise FetchFailed(failure.problem.reason, failure.problem.message)
        if not self.kube.claim_exists(ns, source.claim):
            raise FetchFailed(
                "ArtifactUnreachable",
                f"pvc://: PersistentVolumeClaim {ns}/{source.claim} not found",
            )
        name = upload_name(key[1], generation)
        job = self.kube.job(ns, name)
        if job is None or not self.store.uploads.pending(key, generation):
            return self._start(key, body, source, name, job is not None)
        ended = _ended(job)
        if ended is None:
            return Uploading(f"uploading from pvc://{source.claim} (Job {ns}/{name})")
        detail = self.kube.failed_pod_message(ns, name) if ended[0] else ""
        self.store.uploads.revoke(key)  # whatever the Job did, its token is done
        self.kube.delete(ns, name)
        if ended[0]:
            message = f"upload Job {name} failed ({ended[1]})" + (f": {detail}" if detail else "")
        else:  # completed, but the upload did not reach this store (another leader's?)
            message = f"upload Job {name} completed but this operator's store got no upload"
        problem = Problem("ArtifactUnreachable", message)
        with self._guard:
            self._failures[key] = _Failure(generation, problem, time.monotonic())
        raise FetchFailed(problem.reason, problem.message)

    def _start(self, key: Key, body: Obj, source: PvcSource, name: str, exists: bool) -> Uploading:
        ns = key[0]
        if exists:  # a Job whose token this operator does not hold: start over
            self.kube.delete(ns, name)
            return Uploading(f"restarting the upload from pvc://{source.claim}")
        token = self.store.uploads.issue(key, body["metadata"].get("generation"))
        if not self.kube.create(render_upload_secret(body, token)):
            self.kube.delete(ns, name)  # a stale Secret (an earlier operator's token)
            self.store.uploads.revoke(key)
            return Uploading(f"restarting the upload from pvc://{source.claim}")
        self.kube.create(render_upload_job(body, source, self.image, self.store.base_url))
        return Uploading(f"uploading from pvc://{source.claim} (Job {ns}/{name})")


def _ended(job: Obj) -> tuple[bool, str] | None:
    """(failed, reason) once the Job finished; None while it runs."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("status") == "True" and cond.get("type") in ("Complete", "Failed"):
            failed = cond["type"] == "Failed"
            return failed, cond.get("reason") or cond["type"]
    return None
