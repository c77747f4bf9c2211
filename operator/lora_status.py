"""What one adapter reconcile observed -> LoRAAdapter status: pure, no I/O.

Ready means "served on every ready replica of the service": loadedReplicas == replicas
> 0. A refusal (admission, artifact, base model) is Ready=False and Degraded=True with
the same reason and message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from infleet.operator.status import Problem, set_condition

Obj = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Observed:
    generation: int | None
    service: str | None  # NAMESPACE/NAME
    served_name: str | None
    problem: Problem | None
    rank: int | None = None
    checksum: str | None = None
    size: int | None = None
    replicas: int = 0  # ready replicas of the service
    loaded: int = 0  # of them, those whose engine lists the adapter
    fetching: str | None = None  # the artifact is on its way (a pvc:// upload Job runs)


def _ready(o: Observed) -> tuple[bool, str, str]:
    if o.problem is not None:
        return False, o.problem.reason, o.problem.message
    if o.fetching is not None:
        return False, "Fetching", o.fetching
    if o.replicas == 0:
        return False, "NoReadyReplicas", f"{o.service} has no ready replica to serve it"
    summary = f"loaded on {o.loaded}/{o.replicas} ready replicas of {o.service}"
    if o.loaded < o.replicas:
        return False, "Loading", summary
    return True, "Loaded", summary


def adapter_status(old: Obj, o: Observed, now: str) -> Obj:
    """The status patch (wire form); `old` is the adapter's current status."""
    conds = old.get("conditions") or []
    ready = _ready(o)
    degraded = (
        (True, o.problem.reason, o.problem.message)
        if o.problem is not None
        else (False, "AsExpected", "")
    )
    status: Obj = {
        "observedGeneration": o.generation,
        "conditions": [
            set_condition(conds, "Ready", *ready, generation=o.generation, now=now),
            set_condition(conds, "Degraded", *degraded, generation=o.generation, now=now),
        ],
        "service": o.service,
        "servedName": o.served_name,
        "rank": o.rank,
        "replicas": o.replicas,
        "loadedReplicas": o.loaded,
        "checksum": o.checksum,
        "size": o.size,
    }
    # A merge patch: None removes a field that no longer applies (e.g. after a refusal).
    return status


def changed(old: Obj, new: Obj) -> bool:
    return any(old.get(k) != v for k, v in new.items())


def events(old: Obj, new: Obj) -> list[tuple[str, str, str]]:
    """(type, reason, message) Events for a Ready or Degraded transition."""
    before = {c["type"]: (c["status"], c["reason"]) for c in old.get("conditions") or []}
    out = []
    for cond in new["conditions"]:
        if before.get(cond["type"]) == (cond["status"], cond["reason"]):
            continue
        if cond["type"] == "Degraded" and cond["status"] == "True":
            out.append(("Warning", cond["reason"], cond["message"]))
        elif cond["type"] == "Ready" and cond["status"] == "True":
            out.append(("Normal", cond["reason"], cond["message"]))
    return out
