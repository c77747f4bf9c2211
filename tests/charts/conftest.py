"""A local control plane whose API server keeps an audit log, shared by this folder's tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from infleet.localplane import plane as plane_module
from infleet.localplane.server import ApiServer
from tests.charts.operator_needs import Need
from tests.localplane.harness import RunningPlane, fast_config

APPLY = "application/apply-patch+yaml"
AuditLog = list[tuple[str, set[Need]]]  # (User-Agent, what RBAC checks for the request)


def attributes(request: web.Request) -> set[Need]:
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
def audited_plane() -> Iterator[tuple[RunningPlane, AuditLog]]:
    log: AuditLog = []

    @web.middleware
    async def audit(request: web.Request, handler: Any) -> web.StreamResponse:
        log.append((request.headers.get("User-Agent", ""), attributes(request)))
        return await handler(request)

    def audited_server(*args: Any, **kw: Any) -> ApiServer:
        server = ApiServer(*args, **kw)
        server.app.middlewares.append(audit)
        return server

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plane_module, "ApiServer", audited_server)
        running = RunningPlane(fast_config(workloads=False))
    yield running, log
    running.stop()
