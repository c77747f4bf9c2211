"""One reconcile of an InferenceService: plan (pure), apply children, write status.

`plan` decides everything from the object alone; `reconcile` is the thin I/O around it,
shared by the InferenceService handlers and the child watch.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Protocol

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from infleet.api import InferenceService
from infleet.operator.errors import SpecError, describe
from infleet.operator.names import POOLS, Pool, pool_deployment_names
from infleet.operator.render import RenderOptions, render_children
from infleet.operator.replicas import PoolReplicas, plan_replicas
from infleet.operator.status import Problem, compute_status, decision_events

Obj = dict[str, Any]
STATUS_CONFLICT_RETRIES = 3


class KubeApi(Protocol):
    def apply(self, obj: Obj) -> Obj: ...
    def get_deployment(self, namespace: str, name: str) -> Obj | None: ...
    def get_service(self, namespace: str, name: str) -> Obj | None: ...
    def get_inference_service(self, namespace: str, name: str) -> Obj | None: ...
    def patch_status(
        self, namespace: str, name: str, status: Obj, resource_version: str | None = None
    ) -> Obj | None: ...


@dataclass(frozen=True, slots=True)
class Plan:
    children: list[Obj]  # empty when there is a problem: no child is touched
    replicas: PoolReplicas | None
    problem: Problem | None


@dataclass(slots=True)
class Outcome:
    status: Obj
    events: list[tuple[str, str, str]] = field(default_factory=list)
    result: str = "applied"  # applied | invalid | error
    error: ApiException | None = None
    body: Obj | None = None  # the InferenceService as last read or written; None: gone


def plan(body: Obj, options: RenderOptions) -> Plan:
    """The children to apply, or why none may be touched."""
    try:
        isvc = InferenceService.model_validate(body)
        return Plan(render_children(isvc, options), plan_replicas(isvc), None)
    except ValidationError as err:
        return Plan([], None, Problem("InvalidSpec", describe(err)))
    except SpecError as err:
        return Plan([], None, Problem(err.reason, f"spec.{err}"))


def now_rfc3339() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_changed(old: Obj, new: Obj) -> bool:
    return any(old.get(key) != value for key, value in new.items())


def reconcile(body: Obj, kube: KubeApi, options: RenderOptions, now: str | None = None) -> Outcome:
    meta = body["metadata"]
    name, namespace = meta["name"], meta.get("namespace") or "default"
    p = plan(body, options)
    problem, error = p.problem, None
    deployments: dict[Pool, Obj | None] = {}
    service: Obj | None = None
    if problem is None:
        try:
            for child in p.children:
                live = kube.apply(child)
                if child["kind"] == "Deployment":
                    deployments[live["metadata"]["labels"]["infleet.io/pool"]] = live
                elif child["kind"] == "Service":
                    service = live
        except ApiException as err:
            error = err
            what = f"{child['kind']}/{child['metadata']['name']}"
            problem = Problem("ApplyFailed", f"applying {what}: {err.status} {err.reason}")
    if problem is not None:  # report what exists, untouched
        names = pool_deployment_names(name)
        deployments = {pool: kube.get_deployment(namespace, names[pool]) for pool in POOLS}
        service = kube.get_service(namespace, name)
    outcome = report(body, kube, p, deployments, service, now, problem)
    outcome.result = "error" if error else ("invalid" if problem else "applied")
    outcome.error = error
    return outcome


def report(
    body: Obj,
    kube: KubeApi,
    p: Plan,
    deployments: dict[Pool, Obj | None],
    service: Obj | None,
    now: str | None = None,
    problem: Problem | None = None,
) -> Outcome:
    """Writes the status the children show, when it changed; with the Events to post.

    The child watch calls this alone when no child needs applying again."""
    meta = body["metadata"]
    name, namespace = meta["name"], meta.get("namespace") or "default"
    problem = problem or p.problem
    now = now or now_rfc3339()
    events: list[tuple[str, str, str]] = []
    # Only the writer whose patch lands on the version it read reports the change, so
    # concurrent reconciles of one service do not repeat its Events; a loser re-reads
    # the object and writes what it observed on top of the winner's status.
    for _attempt in range(STATUS_CONFLICT_RETRIES):
        old = body.get("status") or {}
        status = compute_status(body, deployments, service, p.replicas, now, problem)
        if not status_changed(old, status):
            break
        written = kube.patch_status(
            namespace, name, status, body["metadata"].get("resourceVersion")
        )
        if written is not None:
            events, body = decision_events(old, status), written
            break
        body = kube.get_inference_service(namespace, name)
        if body is None or body["metadata"].get("generation") != meta.get("generation"):
            break  # gone, or a newer spec whose own reconcile will write the status
    return Outcome(status, events, "invalid" if problem else "applied", body=body)
