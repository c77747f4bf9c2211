"""Is a live child still what the operator would apply? Pure functions, no I/O.

The child watch applies children again only when one has drifted: at 1,000 services,
re-applying every child on every child event (most of them the Deployment controller's
status updates) was most of the operator's API traffic. The check errs towards drift:
anything it cannot match (a value the server rewrote, a list someone extended) means
one server-side apply, which is a no-op on the server when nothing we own changed.
"""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]


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


def drifted(desired_children: list[Obj], live: Obj) -> bool:
    """Whether `live` lacks something of its desired counterpart; False for an object
    the operator does not render (nothing to put back)."""
    meta = live.get("metadata") or {}
    for child in desired_children:
        if child["kind"] == live.get("kind") and child["metadata"]["name"] == meta.get("name"):
            return not contains(live, child)
    return False
