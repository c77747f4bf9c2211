"""The policy's memory in an owned ConfigMap (NAME-autoscaler), so a restart or a new
leader resumes what was learned (capacity per request shape, lead time, spot burn, the
stabilization and burst windows, the last decision) instead of starting cold.

Pure: the ConfigMap to apply for a state, and the state a cached ConfigMap holds. A
ConfigMap that is not a snapshot of this version (hand-edited, an older operator) is
refused with the reason; the caller then starts cold, which the cold-start rule makes
safe (it holds the replicas it finds for a full window).
"""

from __future__ import annotations

import json
from typing import Any

from infleet.api import InferenceService
from infleet.autoscaler.state import PolicyState, restore, snapshot
from infleet.operator.names import autoscaler_state_name, child_labels

Obj = dict[str, Any]
STATE_KEY = "state.json"
WRITE_EVERY_S = 60.0  # at most one write per service a minute, unless the decision moved


def render_state(isvc: InferenceService, state: PolicyState) -> Obj:
    """The ConfigMap holding `state`, owned by the service (deleted with it)."""
    meta: Obj = {
        "name": autoscaler_state_name(isvc.name),
        "namespace": isvc.namespace,
        "labels": child_labels(isvc.name),  # the operator's child watch caches it
    }
    uid = isvc.metadata.get("uid")
    if uid:
        meta["ownerReferences"] = [
            {
                "apiVersion": isvc.api_version,
                "kind": isvc.kind,
                "name": isvc.name,
                "uid": uid,
                "controller": True,
            }
        ]
    data = json.dumps(snapshot(state), separators=(",", ":"), sort_keys=True)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {STATE_KEY: data}}


def restored_state(name: str, children: list[Obj]) -> tuple[PolicyState | None, str | None]:
    """The state kept for service `name` among its cached children: (state, None), or
    (None, why not) when there is one that cannot be used, or (None, None) when none."""
    wanted = autoscaler_state_name(name)
    found = next(
        (c for c in children if c.get("kind") == "ConfigMap" and c["metadata"]["name"] == wanted),
        None,
    )
    if found is None:
        return None, None
    text = (found.get("data") or {}).get(STATE_KEY)
    if text is None:
        return None, f"ConfigMap {wanted} has no {STATE_KEY}"
    try:
        return restore(json.loads(text)), None
    except ValueError as err:  # JSONDecodeError too; restore refuses what is not a snapshot
        return None, f"ConfigMap {wanted}: {type(err).__name__}: {err}"
