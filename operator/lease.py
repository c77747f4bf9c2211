"""The leader Lease (coordination.k8s.io/v1): its record and the three calls on it.

Writes carry the resourceVersion they were computed from, so of two replicas racing for
an expired lease exactly one wins (the other gets 409 and stays a follower).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from kubernetes.client.exceptions import ApiException

from infleet.operator.kube import Kube, as_json

Obj = dict[str, Any]


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    holder: str  # "" once released
    duration_s: int
    acquired: str  # RFC 3339 with microseconds (a MicroTime)
    renewed: str
    transitions: int
    version: str = ""  # the resourceVersion it was read at; "" for a new Lease


def micro_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def from_lease(lease: Obj) -> LeaseRecord:
    spec = lease.get("spec") or {}
    return LeaseRecord(
        holder=spec.get("holderIdentity") or "",
        duration_s=int(spec.get("leaseDurationSeconds") or 0),
        acquired=spec.get("acquireTime") or "",
        renewed=spec.get("renewTime") or "",
        transitions=int(spec.get("leaseTransitions") or 0),
        version=lease["metadata"].get("resourceVersion", ""),
    )


class LeaseApi:
    """Get, create and replace one Lease; None where another writer got there first."""

    def __init__(self, kube: Kube, namespace: str, name: str) -> None:
        self.kube, self.namespace, self.name = kube, namespace, name

    def _body(self, record: LeaseRecord) -> Obj:
        meta: Obj = {"name": self.name, "namespace": self.namespace}
        if record.version:
            meta["resourceVersion"] = record.version
        spec = {
            "holderIdentity": record.holder,
            "leaseDurationSeconds": record.duration_s,
            "acquireTime": record.acquired,
            "renewTime": record.renewed,
            "leaseTransitions": record.transitions,
        }
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": meta,
            "spec": spec,
        }

    def get(self, timeout: float) -> LeaseRecord | None:
        fn = self.kube.coordination.read_namespaced_lease
        lease = self.kube.read(fn, self.name, self.namespace, _request_timeout=timeout)
        return None if lease is None else from_lease(lease)

    def create(self, record: LeaseRecord, timeout: float) -> LeaseRecord | None:
        fn = self.kube.coordination.create_namespaced_lease
        return self._write(fn, self.namespace, self._body(record), timeout=timeout)

    def replace(self, record: LeaseRecord, timeout: float) -> LeaseRecord | None:
        fn = self.kube.coordination.replace_namespaced_lease
        return self._write(fn, self.name, self.namespace, self._body(record), timeout=timeout)

    def _write(self, fn: Any, *args: Any, timeout: float) -> LeaseRecord | None:
        try:
            response = self.kube.call(fn, *args, _request_timeout=timeout, _preload_content=False)
        except ApiException as err:
            if err.status == 409:  # another candidate wrote first
                return None
            raise
        return from_lease(as_json(response))
