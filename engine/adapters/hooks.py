"""The three places the OpenAI server meets adapters (kept here, so the server's own
modules change by one line each): installing the API, the model list, and requests
naming an adapter."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from aiohttp import web

from infleet.engine.adapters.registry import AdapterRegistry, base_shape
from infleet.engine.adapters.routes import ADAPTERS, AdapterApi, admin_key_from_env, install
from infleet.engine.server import errors


def install_if_enabled(app: web.Application, engine: Any) -> None:
    """With --enable-lora: the load/unload API and the start-up read of the set."""
    args = engine.args
    if not args.enable_lora:
        return
    lora_dir = Path(args.lora_dir or tempfile.mkdtemp(prefix="infleet-lora-"))
    lora_dir.mkdir(parents=True, exist_ok=True)
    limit = args.max_cpu_loras or args.max_loras
    registry = AdapterRegistry(
        base_shape(engine.loaded.config), args.max_lora_rank, lora_dir, limit
    )
    set_dir = Path(args.lora_set) if args.lora_set else None
    install(app, AdapterApi(registry, admin_key_from_env(), set_dir))


def model_cards(app: web.Application, base: str) -> list[dict[str, Any]]:
    """vLLM's adapter cards: `parent` is the base model, `root` where it was loaded from."""
    api = app.get(ADAPTERS)
    if api is None:
        return []
    return [
        {"id": a.name, "object": "model", "created": 0, "owned_by": "infleet",
         "root": a.root, "parent": base}
        for a in api.registry.all()
    ]  # fmt: skip


def refuse_adapter(app: web.Application, model: str) -> None:
    """A request for a loaded adapter: refused until the engine applies adapters (issue 14
    phase 2) rather than answered by the base model as if it were the adapter."""
    api = app.get(ADAPTERS)
    if api is not None and api.registry.get(model) is not None:
        raise errors.ApiError(
            501,
            f"adapter `{model}` is loaded, but this engine does not apply adapters to requests yet",
            type="server_error",
            param="model",
            code="adapter_not_applied",
        )
