"""What the API server checks before it routes a request: the bearer token (401) and the
body's media type (415).

Together they shut the door a plain local HTTP API leaves open: a web page can make a
browser send a "simple" cross-origin POST (`text/plain`, a form, no custom header) to a
loopback port, but it cannot add an `Authorization` header without a CORS preflight, which
this server never grants, nor learn the token.
"""

from __future__ import annotations

import hmac
from typing import Any

from aiohttp import web

from infleet.localplane.crud import PATCH_TYPES
from infleet.localplane.errors import ApiError

# What a kube-apiserver decodes: its serializers plus the patch types (PATCH narrows this
# to the patch types alone, in server.py).
BODY_MEDIA_TYPES = (
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
    *PATCH_TYPES,
)


def authenticate(token: str) -> Any:
    """A middleware refusing every request without `Authorization: Bearer <token>`."""
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):  # constant time: no guessing by timing
            raise ApiError(401, "Unauthorized")
        return await handler(request)

    return middleware


@web.middleware
async def accept_media_types(request: web.Request, handler: Any) -> web.StreamResponse:
    """Refuses a body in any other media type with 415. A body without a Content-Type is
    JSON, as kube-apiserver takes it (the kubernetes Python client sends JSON so)."""
    declared = "Content-Type" in request.headers
    if request.body_exists and declared and request.content_type not in BODY_MEDIA_TYPES:
        raise ApiError(
            415,
            f"the body of the request was in an unknown format ({request.content_type}) - "
            f"accepted media types include: {', '.join(BODY_MEDIA_TYPES)}",
        )
    return await handler(request)
