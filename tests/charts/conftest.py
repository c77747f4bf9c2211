"""A local control plane whose API server logs every request (localplane/faults.py), read
as an audit log: what RBAC checks for each request. Shared by this folder's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from infleet.localplane.faults import Request
from tests.charts.operator_needs import Need
from tests.localplane.harness import RunningPlane, fast_config

APPLY = "application/apply-patch+yaml"


def attributes(request: Request) -> set[Need]:
    """What RBAC checks for one request; empty for discovery and other non-resource paths."""
    parts = request.path.strip("/").split("/")
    if parts[0] == "api" and len(parts) > 2:
        group, rest = "", parts[2:]
    elif parts[0] == "apis" and len(parts) > 3:
        group, rest = parts[1], parts[3:]
    else:
        return set()
    if rest[0] == "namespaces" and len(rest) > 2:
        rest = rest[2:]  # a namespaced resource (a bare namespaces/NAME is the namespace)
    resource, name, sub = rest[0], rest[1] if len(rest) > 1 else "", "/".join(rest[2:3])
    resource = f"{resource}/{sub}" if sub else resource
    method = request.method
    if method == "GET":
        verb = (
            "get" if name else ("watch" if request.query.get("watch") in ("1", "true") else "list")
        )
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method)
        verb = verb or ("delete" if name else "deletecollection")
    needs = {(group, resource, verb)}
    if verb == "patch" and request.content_type == APPLY:
        needs.add((group, resource, "create"))  # apply creates a missing object
    return needs


@pytest.fixture(scope="session")
def audited_plane() -> Iterator[tuple[RunningPlane, list[Request]]]:
    running = RunningPlane(fast_config(workloads=False))
    log = running.call(running.plane.server.faults.record)
    yield running, log
    running.stop()
