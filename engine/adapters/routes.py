"""vLLM's runtime adapter API on the bundled engine, and the start-up read of the set.

- POST /v1/load_lora_adapter {lora_name, lora_path[, tenant]}: 200 when loaded; 400 (OpenAI error,
  `param` naming the field) when the adapter is refused; 409 when the name is taken or
  `--max-cpu-loras` adapters are loaded already (code `adapter_limit`).
- POST /v1/unload_lora_adapter {lora_name}: 200; 404 when no such adapter.
- Both need the admin key (`--admin-api-key`, $INFLEET_ADMIN_API_KEY, from the service's
  `<service>-admin-key` Secret; engine/server/auth.py checks it): tenants call the OpenAI
  API, only the operator loads and unloads. Without any key the engine refuses both (403).
- The set (`--lora-set DIR`, the mounted `<service>-lora` ConfigMap: one JSON entry per
  file) is loaded before the server listens, so a replica reports ready only once it
  serves every adapter of the set; an entry that fails is logged and skipped (the
  operator reports it on the adapter).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from infleet.engine.adapters.fetch import local_dir
from infleet.engine.adapters.registry import AdapterLimit, AdapterRegistry
from infleet.engine.server import auth, errors
from infleet.lora.errors import AdapterError

log = logging.getLogger("infleet.engine.adapters")


@dataclass(slots=True)
class AdapterApi:
    registry: AdapterRegistry
    set_dir: Path | None
    unloaded: Callable[[int], None]  # tells the engine core an adapter (its id) is gone


ADAPTERS = web.AppKey("adapters", AdapterApi)


def install(app: web.Application, api: AdapterApi) -> None:
    app[ADAPTERS] = api
    app.router.add_post("/v1/load_lora_adapter", load)
    app.router.add_post("/v1/unload_lora_adapter", unload)
    app.on_startup.append(read_set)


def _authorize(request: web.Request) -> AdapterApi:
    """The middleware (auth.py) already refused a caller that is not the admin; an engine
    with no key at all has no admin, and loads nothing over HTTP."""
    if not auth.admin_configured(request.app):
        raise errors.ApiError(
            403, "loading adapters is disabled: this engine has no admin key",
            type="permission_error", code="forbidden",
        )  # fmt: skip
    return request.app[ADAPTERS]


async def _body(request: web.Request, *fields: str) -> dict[str, str]:
    try:
        body = json.loads(await request.read())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise errors.bad_request("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise errors.bad_request("the request body must be a JSON object")
    for name in fields:
        if not isinstance(body.get(name), str) or not body[name]:
            raise errors.bad_request(f"{name} is required (a non-empty string)", name)
    return body


async def add(api: AdapterApi, name: str, lora_path: str, tenant: str | None) -> None:
    """Fetches (if a URL), checks and registers one adapter; AdapterError if refused."""
    path = await local_dir(lora_path, api.registry.lora_dir)
    # Reading and checking the tensors takes a while: not on the event loop.
    await asyncio.to_thread(api.registry.add, name, lora_path, path, tenant)


async def load(request: web.Request) -> web.Response:
    api = _authorize(request)
    body = await _body(request, "lora_name", "lora_path")
    name = body["lora_name"]
    if api.registry.get(name) is not None:
        raise errors.ApiError(
            409, f"an adapter named {name!r} is already loaded", param="lora_name", code=409
        )
    try:
        tenant = body.get("tenant")  # ours, beside vLLM's fields: whose adapter it is
        await add(api, name, body["lora_path"], tenant if isinstance(tenant, str) else None)
    except AdapterLimit as err:
        raise errors.ApiError(409, err.message, param=err.field, code="adapter_limit") from None
    except AdapterError as err:
        raise errors.bad_request(err.message, err.field) from None
    log.info("loaded adapter %s", name)
    return web.json_response({"status": "ok", "message": f"adapter {name} loaded"})


async def unload(request: web.Request) -> web.Response:
    api = _authorize(request)
    name = (await _body(request, "lora_name"))["lora_name"]
    adapter = api.registry.remove(name)
    if adapter is None:
        raise errors.ApiError(
            404, f"no adapter named {name!r} is loaded", param="lora_name", code="not_found"
        )
    api.unloaded(adapter.id)
    log.info("unloaded adapter %s", name)
    return web.json_response({"status": "ok", "message": f"adapter {name} unloaded"})


def set_entries(set_dir: Path) -> list[dict[str, Any]]:
    """The entries of the mounted set (files whose names start with a dot are the
    kubelet's own: `..data`, `..2024_...`)."""
    out = []
    for path in sorted(set_dir.iterdir()) if set_dir.is_dir() else []:
        if path.name.startswith(".") or not path.is_file():
            continue
        try:
            entry = json.loads(path.read_text())
            tenant = entry.get("tenant")
            out.append({"name": str(entry["name"]), "url": str(entry["url"]), "tenant": tenant})
        except (OSError, ValueError, KeyError, TypeError) as err:
            log.error("adapter set entry %s unreadable: %s", path.name, err)
    return out


async def read_set(app: web.Application) -> None:
    api = app[ADAPTERS]
    if api.set_dir is None:
        return
    for entry in set_entries(api.set_dir):
        try:
            await add(api, entry["name"], entry["url"], entry["tenant"])
            log.info("adapter %s loaded from the set", entry["name"])
        except AdapterError as err:
            log.error("adapter %s of the set refused: %s", entry["name"], err.message)
