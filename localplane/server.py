"""The HTTP face of the API server: Kubernetes REST paths onto `Api` calls."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import yaml
from aiohttp import web

from infleet.localplane import discovery, openapi, protobuf
from infleet.localplane.crud import PATCH_TYPES, Api
from infleet.localplane.errors import ApiError
from infleet.localplane.faults import Faults
from infleet.localplane.guard import accept_media_types, authenticate
from infleet.localplane.resources import ResourceType
from infleet.localplane.tables import table, wants_table
from infleet.localplane.watch import WatchStream

log = logging.getLogger(__name__)
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when built with it
# (group, plural, subresource, method) -> handler for what is not plain storage (pods/log ...)
SubHandler = Callable[[web.Request, ResourceType, str, str], Awaitable[web.StreamResponse]]


async def read_body(request: web.Request) -> Any:
    """A request body as JSON/YAML, or the protobuf kubectl sends for a few kinds."""
    ctype = request.headers.get("Content-Type", "")
    raw = await request.read()
    if not raw:
        return {}
    if "protobuf" in ctype:
        return protobuf.decode(raw)
    try:
        # Clients send apply patches as JSON under the YAML type; JSON is YAML, and the
        # json module parses it many times faster than PyYAML (the bulk of an apply's cost).
        if "yaml" in ctype and not raw.lstrip().startswith(b"{"):
            return yaml.load(raw, Loader=YAML_LOADER)
        return json.loads(raw)
    except (ValueError, yaml.YAMLError) as err:
        raise ApiError(400, f"couldn't parse the request body: {err}") from err


def _json(body: Any, status: int = 200, warnings: list[str] | None = None) -> web.Response:
    headers = {"Warning": ", ".join(f'299 - "{w}"' for w in warnings)} if warnings else None
    return web.json_response(body, status=status, headers=headers)


class ApiServer:
    def __init__(self, api: Api, token: str, bookmark_interval: float = 30.0) -> None:
        self.api = api
        self.bookmark_interval = bookmark_interval
        self.sub_handlers: dict[tuple[str, str, str, str], SubHandler] = {}
        # Errors outermost, so a refused token or media type answers as a `Status` too;
        # then the test hooks (faults.py), which see every request, refused ones included.
        self.faults = Faults()
        guards = [self.faults.middleware, authenticate(token), accept_media_types]
        self.app = web.Application(middlewares=[self._errors, *guards], client_max_size=64 * 2**20)
        r = self.app.router
        for path in ("/version", "/version/"):  # the kubernetes client asks for /version/
            r.add_get(path, self._version)
        for path in ("/healthz", "/livez", "/readyz"):
            r.add_get(path, self._health)
        r.add_get("/api", self._core)
        r.add_get("/apis", self._groups)
        r.add_get("/openapi/v3", self._openapi_index)
        r.add_get("/openapi/v3/{path:.*}", self._openapi)
        r.add_route("*", "/api/{version}", self._core_version)
        r.add_route("*", "/api/{version}/{tail:.*}", self._resource)
        r.add_route("*", "/apis/{group}", self._group)
        r.add_route("*", "/apis/{group}/{version}", self._group_version)
        r.add_route("*", "/apis/{group}/{version}/{tail:.*}", self._resource)

    @web.middleware
    async def _errors(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as err:
            return _json(err.status(), status=err.code)
        except web.HTTPException as err:
            return _json(ApiError(err.status, err.reason).status(), status=err.status)

    async def _version(self, _: web.Request) -> web.Response:
        return _json(discovery.VERSION)

    async def _health(self, _: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _core(self, request: web.Request) -> web.Response:
        if discovery.wants_aggregated(request.headers.get("Accept", "")):
            return self._aggregated(core=True)
        return _json(discovery.core_versions(request.host))

    async def _groups(self, request: web.Request) -> web.Response:
        if discovery.wants_aggregated(request.headers.get("Accept", "")):
            return self._aggregated(core=False)
        return _json(discovery.group_list(self.api.registry))

    def _aggregated(self, core: bool) -> web.Response:
        body = json.dumps(discovery.aggregated(self.api.registry, core))
        return web.Response(text=body, headers={"Content-Type": discovery.AGGREGATED})

    async def _openapi_index(self, _: web.Request) -> web.Response:
        return _json(openapi.index(self.api.registry))

    async def _openapi(self, request: web.Request) -> web.Response:
        parts = request.match_info["path"].split("/")
        group, version = (
            (parts[1], parts[2])
            if parts[0] == "apis" and len(parts) == 3
            else (("", parts[1]) if parts[0] == "api" and len(parts) == 2 else (None, None))
        )
        if group is None or not self.api.registry.in_version(group, version or ""):
            raise ApiError(404, "the server could not find the requested resource")
        return _json(openapi.document(self.api.registry, group, version or ""))

    async def _core_version(self, request: web.Request) -> web.Response:
        found = discovery.resource_list(self.api.registry, "", request.match_info["version"])
        if found is None:
            raise ApiError(404, "the server could not find the requested resource")
        return _json(found)

    async def _group(self, request: web.Request) -> web.Response:
        found = discovery.group(self.api.registry, request.match_info["group"])
        if found is None:
            raise ApiError(404, "the server could not find the requested resource")
        return _json(found)

    async def _group_version(self, request: web.Request) -> web.Response:
        found = discovery.resource_list(
            self.api.registry, request.match_info["group"], request.match_info["version"]
        )
        if found is None:
            raise ApiError(404, "the server could not find the requested resource")
        return _json(found)

    # -- resources -------------------------------------------------------------
    def _locate(self, request: web.Request) -> tuple[ResourceType, str | None, str, str]:
        group = request.match_info.get("group", "")
        version = request.match_info["version"]
        segs = [s for s in request.match_info["tail"].split("/") if s]
        ns: str | None = None
        if len(segs) >= 3 and segs[0] == "namespaces" and segs[2] not in ("status", "finalize"):
            ns, segs = segs[1], segs[2:]
        plural, name, sub = ([*segs, "", "", ""])[:3]
        rt = self.api.registry.get(group, version, plural)
        if rt is None or len(segs) > 3:
            raise ApiError(404, "the server could not find the requested resource")
        if not rt.namespaced:
            ns = None
        return rt, ns, name, sub

    async def _resource(self, request: web.Request) -> web.StreamResponse:
        rt, ns, name, sub = self._locate(request)
        q = request.query
        handler = self.sub_handlers.get((rt.group, rt.plural, sub, request.method))
        if sub and handler is not None:
            return await handler(request, rt, ns or "", name)
        if sub == "scale" and rt.scale is not None:
            from infleet.localplane.scale import scale_request

            return _json(
                await scale_request(self.api, request, rt, ns or "", name, self._manager(request))
            )
        if sub not in ("", "status"):
            raise ApiError(404, "the server could not find the requested resource")
        warnings: list[str] = []
        common = {
            "dry_run": bool(q.get("dryRun")),
            "validation": q.get("fieldValidation", "Warn"),
            "warnings": warnings,
        }
        method = request.method
        if method == "GET" and not name:
            if q.get("watch") in ("true", "1"):
                stream = WatchStream(
                    self.api.store,
                    rt,
                    ns,
                    q,
                    wants_table(request.headers.get("Accept", "")),
                    self.bookmark_interval,
                )
                return await stream.serve(request)
            return self._list(request, rt, ns)
        if method == "GET":
            return self._render(request, rt, self.api.get(rt, ns or "", name))
        if method == "POST" and not name:
            body = await read_body(request)
            return _json(
                self.api.create(rt, ns or "", body, self._manager(request), **common), 201, warnings
            )
        if method == "PUT" and name:
            body = await read_body(request)
            return _json(
                self.api.update(
                    rt,
                    ns or "",
                    name,
                    body,
                    self._manager(request),
                    subresource=sub or None,
                    **common,
                ),
                200,
                warnings,
            )
        if method == "PATCH" and name:
            ctype = request.headers.get("Content-Type", "").split(";")[0].strip()
            if ctype not in PATCH_TYPES:
                raise ApiError(
                    415,
                    f"the body of the request was in an unknown format - "
                    f"accepted media types include: {', '.join(PATCH_TYPES)}",
                )
            body = await read_body(request)
            out = self.api.patch(
                rt,
                ns or "",
                name,
                PATCH_TYPES[ctype],
                body,
                self._manager(request),
                subresource=sub or None,
                force=q.get("force") == "true",
                **common,
            )
            return _json(out, 200, warnings)
        if method == "DELETE" and name:
            opts = await read_body(request) if request.can_read_body else {}
            grace = q.get("gracePeriodSeconds", opts.get("gracePeriodSeconds"))
            out = self.api.delete(
                rt,
                ns or "",
                name,
                grace=None if grace is None else int(grace),
                propagation=q.get("propagationPolicy", opts.get("propagationPolicy")),
                preconditions=opts.get("preconditions"),
                dry_run=bool(q.get("dryRun")),
            )
            return _json(out)
        if method == "DELETE":
            items, _ = self.api.list(rt, ns, q.get("labelSelector", ""), q.get("fieldSelector", ""))
            for item in items:
                self.api.delete(rt, item["metadata"].get("namespace", ""), item["metadata"]["name"])
            return _json(
                {"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}}
            )
        raise ApiError(405, f"{method} is not supported here")

    def _list(self, request: web.Request, rt: ResourceType, ns: str | None) -> web.Response:
        q = request.query
        items, rv = self.api.list(rt, ns, q.get("labelSelector", ""), q.get("fieldSelector", ""))
        start, token = 0, ""
        if q.get("continue"):
            try:
                cont = json.loads(base64.urlsafe_b64decode(q["continue"]))
                start, rv = int(cont["start"]), cont["rv"]
            except (ValueError, KeyError) as err:
                raise ApiError(400, "continue key is not valid") from err
        limit = int(q.get("limit") or 0)
        remaining = 0
        if limit and start + limit < len(items):
            token = base64.urlsafe_b64encode(
                json.dumps({"start": start + limit, "rv": rv}).encode()
            ).decode()
            remaining = len(items) - start - limit
        items = items[start : start + limit] if limit else items[start:]
        if wants_table(request.headers.get("Accept", "")):
            return _json(table(rt, items, rv, q.get("includeObject", "Metadata"), token))
        meta: dict[str, Any] = {"resourceVersion": rv}
        if token:
            meta.update({"continue": token, "remainingItemCount": remaining})
        return _json(
            {
                "kind": f"{rt.kind}List",
                "apiVersion": rt.api_version,
                "metadata": meta,
                "items": items,
            }
        )

    def _render(self, request: web.Request, rt: ResourceType, obj: dict) -> web.Response:
        if wants_table(request.headers.get("Accept", "")):
            return _json(
                table(
                    rt,
                    [obj],
                    obj["metadata"]["resourceVersion"],
                    request.query.get("includeObject", "Metadata"),
                )
            )
        return _json(obj)

    @staticmethod
    def _manager(request: web.Request) -> str:
        if request.query.get("fieldManager"):
            return request.query["fieldManager"]
        return request.headers.get("User-Agent", "unknown").split("/")[0] or "unknown"
