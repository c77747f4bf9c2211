"""Where the OpenAI server meets adapters and tenants (kept here, so the server's own
modules change by one line each): installing the API, authenticating a request's tenant,
the model list, requests naming an adapter, and the prefix-cache salt."""

from __future__ import annotations

import hmac
import tempfile
from pathlib import Path
from typing import Any

from aiohttp import web

from infleet.engine.adapters.keys import ApiKeys
from infleet.engine.adapters.registry import AdapterRegistry, base_shape
from infleet.engine.adapters.routes import ADAPTERS, AdapterApi, admin_key_from_env, bearer
from infleet.engine.adapters.routes import install as install_routes
from infleet.engine.server import errors

KEYS = web.AppKey("api_keys", ApiKeys)
TENANT = web.RequestKey("tenant", str)  # the caller's tenant, from its key
ADMIN = web.RequestKey("admin", bool)  # the caller holds the admin key
ADMIN_PATHS = ("/v1/load_lora_adapter", "/v1/unload_lora_adapter")  # the admin key's own


def install_if_enabled(app: web.Application, engine: Any) -> None:
    """--api-keys-file: tenants authenticate; --enable-lora: the adapter API and the
    start-up read of the set."""
    args = engine.args
    if args.api_keys_file:
        app[KEYS] = ApiKeys(Path(args.api_keys_file))
    if not args.enable_lora:
        return
    lora_dir = Path(args.lora_dir or tempfile.mkdtemp(prefix="infleet-lora-"))
    lora_dir.mkdir(parents=True, exist_ok=True)
    limit = args.max_cpu_loras or args.max_loras
    shape = base_shape(engine.loaded.config)
    registry = AdapterRegistry(shape, args.max_lora_rank, lora_dir, limit)
    set_dir = Path(args.lora_set) if args.lora_set else None
    install_routes(app, AdapterApi(registry, admin_key_from_env(), set_dir))


def authenticate(request: web.Request) -> None:
    """With --api-keys-file, every /v1/ request names its tenant by key (401 otherwise);
    the admin key (the operator's) sees every tenant's adapters."""
    keys = request.app.get(KEYS)
    if keys is None or not request.path.startswith("/v1/") or request.path in ADMIN_PATHS:
        return
    given = bearer(request)
    api = request.app.get(ADAPTERS)
    if api is not None and api.admin_key and hmac.compare_digest(given, api.admin_key):
        request[ADMIN] = True
        return
    tenant = keys.tenant(given)
    if tenant is None:
        raise errors.ApiError(
            401, "a valid API key is required (Authorization: Bearer KEY)",
            type="authentication_error", code="invalid_api_key",
        )  # fmt: skip
    request[TENANT] = tenant


def _visible(request: web.Request, tenant: str | None) -> bool:
    """An adapter is its tenant's: others neither list nor use it."""
    if request.app.get(KEYS) is None or request.get(ADMIN):
        return True
    return tenant == request.get(TENANT)


def model_cards(request: web.Request, base: str) -> list[dict[str, Any]]:
    """vLLM's adapter cards: `parent` is the base model, `root` where it was loaded from."""
    api = request.app.get(ADAPTERS)
    if api is None:
        return []
    return [
        {"id": a.name, "object": "model", "created": 0, "owned_by": a.tenant or "infleet",
         "root": a.root, "parent": base}
        for a in api.registry.all()
        if _visible(request, a.tenant)
    ]  # fmt: skip


def refuse_adapter(request: web.Request, model: str) -> None:
    """A request for a loaded adapter of the caller's: refused until the engine applies
    adapters (issue 14 phase 2), rather than answered by the base model as if it were the
    adapter. Another tenant's adapter is not there for the caller (404 follows)."""
    api = request.app.get(ADAPTERS)
    adapter = api.registry.get(model) if api is not None else None
    if adapter is not None and _visible(request, adapter.tenant):
        raise errors.ApiError(
            501,
            f"adapter `{model}` is loaded, but this engine does not apply adapters to requests yet",
            type="server_error",
            param="model",
            code="adapter_not_applied",
        )


def cache_salt(request: web.Request, salt: str | None) -> str:
    """Prefixes are shared within a tenant only: its name salts every block hash."""
    tenant = request.get(TENANT)
    return f"{tenant}\x00{salt or ''}" if tenant else salt or ""
