"""Desired children against live ones: what to apply, what to prune. Pure, no I/O.

Apply: a child is applied again only when it is missing or lacks something the operator
renders (at 1,000 services, re-applying every child on every event was most of the
operator's API traffic). The check errs towards applying: anything it cannot match (a
value the server rewrote, a list someone extended) means one server-side apply, a no-op
on the server when nothing the operator owns changed. Every rendered child carries a hash
of itself (operator/render.py), so one rendered differently (a new operator version)
is applied once even where the old object already contains the new fields.

Prune: a live child the spec no longer renders goes, if it is of a kind the operator
may delete (PRUNABLE: a pool's Deployment or LeaderWorkerSet, when the pool leaves the spec
or its replicas move between one node and several; the router's
children, when the router is turned off) and this service is its controller; nothing
else is touched.
"""

from __future__ import annotations

from typing import Any

from infleet.operator.names import SERVICE_LABEL, router_name

Obj = dict[str, Any]
PRUNABLE = ("Deployment", "LeaderWorkerSet")  # a pool's workload: one kind or the other
# The router's children (operator/router.py) go when the router is turned off; other
# children of these kinds (the engines' Service, ConfigMap, PDB) are always rendered.
ROUTER_KINDS = (
    "Service",
    "ConfigMap",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Role",
    "RoleBinding",
)


def contains(live: Any, desired: Any) -> bool:
    """Whether every field set in `desired` has the same value in `live` (server
    defaults may add fields; lists must match element by element)."""
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(
            key in live and contains(live[key], value) for key, value in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(live) == len(desired)
            and all(contains(have, want) for have, want in zip(live, desired, strict=True))
        )
    return live == desired


def _ident(obj: Obj) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def to_apply(desired: list[Obj], live: list[Obj]) -> list[Obj]:
    """The desired children, in order, that are missing or lack something."""
    seen = {_ident(obj): obj for obj in live}
    return [c for c in desired if not contains(seen.get(_ident(c)), c)]


def controlled_by(obj: Obj, owner_uid: str) -> bool:
    refs = obj["metadata"].get("ownerReferences") or []
    return any(r.get("uid") == owner_uid and r.get("controller") for r in refs)


def prunable(obj: Obj) -> bool:
    if obj["kind"] in PRUNABLE:
        return True
    service = (obj["metadata"].get("labels") or {}).get(SERVICE_LABEL)
    return obj["kind"] in ROUTER_KINDS and obj["metadata"]["name"] == router_name(service or "")


def to_prune(desired: list[Obj], live: list[Obj], owner_uid: str) -> list[Obj]:
    """Live children this service controls, of a prunable kind, that it no longer renders."""
    wanted = {_ident(c) for c in desired}
    return [
        obj
        for obj in live
        if prunable(obj)
        and _ident(obj) not in wanted
        and controlled_by(obj, owner_uid)
        and not obj["metadata"].get("deletionTimestamp")
    ]
