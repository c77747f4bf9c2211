"""Who is calling: API keys -> tenants, and the prefix-cache salt that follows from it.

Keys come from `--api-key` (one tenant, `default`), `--api-keys-file` (the YAML tenant ->
key hashes file that the router reads too, `infleet.api.tenants`, reloaded when a Secret
mount swaps it) and `--admin-api-key` (the operator's and the routers', for the LoRA
endpoints and the router feed; a tenant marked `admin: true` in the keys file counts too). Without any key every caller is tenant
`default`, today's behaviour. Keys are compared as hashes and never logged.

The cache salt is the tenant's name plus, after a separator no tenant name can hold, the
client's own `cache_salt`: a client can partition its own tenant's cache further, never
reach into another's, so `cached_tokens` and TTFT leak nothing across tenants.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from infleet.api.router_wire import EVENTS_PATH, STATE_PATH
from infleet.api.tenants import DEFAULT_TENANT, KeysFile, Tenant, bearer_token, hash_key
from infleet.engine.server.errors import ApiError

ADMIN_TENANT = "admin"  # the tenant of --admin-api-key
# The LoRA endpoints, and the router feed (api/router_wire.py): no prompt text, but every
# tenant's load and cached prefixes, which no tenant may read. The operator gives the
# service's routers the admin key (operator/router.py); a server without keys is open.
ADMIN_PATHS = frozenset(
    {"/v1/load_lora_adapter", "/v1/unload_lora_adapter", STATE_PATH, EVENTS_PATH}
)
OPEN_PATHS = frozenset({"/health"})  # the probes
_SALT_SEP = "\x1f"  # not in any tenant name (api/tenants.py's pattern)
CALLER = web.RequestKey("tenant", Tenant)  # the authenticated Tenant of a request

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def cache_salt(tenant: str, client_salt: str | None) -> str:
    """The prefix-cache salt of a request: its tenant first, the client's salt within it."""
    return tenant + _SALT_SEP + (client_salt or "")


@dataclass(slots=True)
class Keys:
    """The configured keys; `identify` maps an Authorization header to a Tenant."""

    api_key_hash: str | None = None
    admin_key_hash: str | None = None
    keys_file: KeysFile | None = None
    metrics_need_key: bool = False
    refresh_seconds: float = 1.0  # how often the keys file is looked at, at most
    _checked: float = 0.0

    @classmethod
    def from_flags(
        cls,
        api_key: str | None,
        keys_file: str | None,
        admin_key: str | None,
        metrics_need_key: bool = False,
    ) -> Keys:
        """Raises KeysFileError (naming the file and tenant) or OSError for a bad file."""
        return cls(
            api_key_hash=hash_key(api_key) if api_key else None,
            admin_key_hash=hash_key(admin_key) if admin_key else None,
            keys_file=KeysFile(Path(keys_file)) if keys_file else None,
            metrics_need_key=metrics_need_key,
        )

    @property
    def tenant_keys(self) -> bool:
        """Whether /v1/* needs a key (a lone admin key guards only the admin paths)."""
        return self.api_key_hash is not None or self.keys_file is not None

    def identify(self, authorization: str | None) -> Tenant | None:
        key = bearer_token(authorization)
        if key is None:
            return None
        digest = hash_key(key)
        if digest == self.admin_key_hash:
            return Tenant(ADMIN_TENANT, admin=True)
        if digest == self.api_key_hash:
            return Tenant(DEFAULT_TENANT)
        if self.keys_file is not None:
            self._maybe_refresh()
            return self.keys_file.authenticate(key)
        return None

    def _maybe_refresh(self) -> None:
        now = time.monotonic()
        if self.keys_file is not None and now - self._checked >= self.refresh_seconds:
            self._checked = now
            self.keys_file.refresh()


KEYS = web.AppKey("keys", Keys)  # the server's keys (build_app sets it)


def admin_configured(app: web.Application) -> bool:
    """Whether any caller can prove to be the admin (without keys everyone is, unproven)."""
    keys = app.get(KEYS)
    return keys is not None and (keys.admin_key_hash is not None or keys.tenant_keys)


def unauthorized(message: str) -> ApiError:
    return ApiError(401, message, code="invalid_api_key")


def forbidden(message: str) -> ApiError:
    return ApiError(403, message, type="permission_error", code="permission_denied")


def middleware(keys: Keys) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """aiohttp middleware: sets request[CALLER], or raises 401/403 in the OpenAI shape."""

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        request[CALLER] = _caller(keys, request)
        return await handler(request)

    return authenticate


def _caller(keys: Keys, request: web.Request) -> Tenant:
    path = request.path
    admin_path = path in ADMIN_PATHS
    needs_key = (admin_path and (keys.admin_key_hash is not None or keys.tenant_keys)) or (
        keys.tenant_keys
        and path not in OPEN_PATHS
        and (path != "/metrics" or keys.metrics_need_key)
    )
    if not needs_key:
        return Tenant(DEFAULT_TENANT, admin=True)
    header = request.headers.get("Authorization")
    if bearer_token(header) is None:
        raise unauthorized(
            "You didn't provide an API key: send it as the header Authorization: Bearer KEY."
        )
    tenant = keys.identify(header)
    if tenant is None:
        raise unauthorized("Incorrect API key provided.")
    if admin_path and not tenant.admin:
        raise forbidden(f"{path} needs the admin key, not a tenant's")
    return tenant


def caller(request: web.Request) -> Tenant:
    """The request's tenant (DEFAULT_TENANT when the server has no keys)."""
    return request.get(CALLER) or Tenant(DEFAULT_TENANT)
