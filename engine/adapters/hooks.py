"""Where the OpenAI server meets adapters and tenants (kept here, so the server's own
modules change by one line each): installing the API, the model list and requests naming
an adapter, each seen as the caller's tenant (engine/server/auth.py says who that is)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from aiohttp import web

from infleet.engine.adapters.registry import AdapterRegistry, base_shape
from infleet.engine.adapters.routes import ADAPTERS, AdapterApi
from infleet.engine.adapters.routes import install as install_routes
from infleet.engine.args import EngineArgs
from infleet.engine.messages import CoreReady
from infleet.engine.server import auth, errors


def install_if_enabled(app: web.Application, args: EngineArgs, ready: CoreReady) -> None:
    """--enable-lora: the adapter API and the start-up read of the set."""
    if not args.enable_lora:
        return
    lora_dir = Path(args.lora_dir or tempfile.mkdtemp(prefix="infleet-lora-"))
    lora_dir.mkdir(parents=True, exist_ok=True)
    limit = args.max_cpu_loras or args.max_loras
    shape = base_shape(ready)
    registry = AdapterRegistry(shape, args.max_lora_rank, lora_dir, limit)
    set_dir = Path(args.lora_set) if args.lora_set else None
    install_routes(app, AdapterApi(registry, set_dir))


def _visible(request: web.Request, tenant: str | None) -> bool:
    """An adapter is its tenant's: others neither list nor use it. Without keys every caller
    is an admin (auth.py), so all adapters are visible."""
    caller = auth.caller(request)
    return caller.admin or tenant == caller.name


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
