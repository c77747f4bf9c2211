"""Where the OpenAI server meets adapters and tenants (kept here, so the server's own
modules change by one line each): installing the API, the model list and requests naming
an adapter, each seen as the caller's tenant (engine/server/auth.py says who that is)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from infleet.engine.adapters.registry import AdapterRegistry, base_shape
from infleet.engine.adapters.routes import ADAPTERS, AdapterApi
from infleet.engine.adapters.routes import install as install_routes
from infleet.engine.args import EngineArgs
from infleet.engine.messages import AdapterRef, CoreReady, ToCore, UnloadAdapter
from infleet.engine.server import auth
from infleet.lora.errors import AdapterError


def install_if_enabled(
    app: web.Application, args: EngineArgs, ready: CoreReady, to_core: Callable[[ToCore], None]
) -> None:
    """--enable-lora: the adapter API, `--lora-modules` (loaded now: AdapterError if one is
    refused, and the server does not start) and the start-up read of the set."""
    if not args.enable_lora:
        if args.lora_modules:
            raise AdapterError("--lora-modules", "--lora-modules needs --enable-lora")
        return
    lora_dir = Path(args.lora_dir or tempfile.mkdtemp(prefix="infleet-lora-"))
    lora_dir.mkdir(parents=True, exist_ok=True)
    limit = args.max_cpu_loras or args.max_loras
    shape = base_shape(ready)
    registry = AdapterRegistry(shape, args.max_lora_rank, lora_dir, limit)
    for module in args.lora_modules:
        name, path = module.split("=", 1)
        try:  # the operator's own flags: any path (not only inside --lora-dir)
            registry.add(name, path, Path(path).resolve(), inside_lora_dir=False)
        except AdapterError as err:
            raise AdapterError(err.field, f"--lora-modules {name}: {err.message}") from None
    set_dir = Path(args.lora_set) if args.lora_set else None
    install_routes(app, AdapterApi(registry, set_dir, lambda i: to_core(UnloadAdapter(i))))


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


def lookup(request: web.Request) -> Callable[[str], AdapterRef | None]:
    """The adapter a `model` name selects for this caller: another tenant's adapter is not
    there for it (a 404 follows, as for any unknown model)."""
    api = request.app.get(ADAPTERS)

    def find(name: str) -> AdapterRef | None:
        adapter = api.registry.get(name) if api is not None else None
        if adapter is None or not _visible(request, adapter.tenant):
            return None
        return adapter.ref

    return find
