"""The router's own errors, in the OpenAI error shape the engine uses:
{"error": {"message", "type", "param", "code"}} with the matching HTTP status."""

from __future__ import annotations

from aiohttp import web


class RouterError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | int | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type = status, message, type
        self.code, self.param, self.headers = code, param, headers or {}

    def response(self) -> web.Response:
        body = {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }
        return web.json_response(body, status=self.status, headers=self.headers)


def bad_request(message: str, param: str | None = None) -> RouterError:
    return RouterError(400, message, param=param, code=400)


def unauthorized() -> RouterError:
    return RouterError(
        401,
        "Incorrect or missing API key: send `Authorization: Bearer KEY`.",
        code="invalid_api_key",
    )


def model_not_found(model: str) -> RouterError:
    return RouterError(
        404, f"The model `{model}` does not exist.", param="model", code="model_not_found"
    )


def not_found(path: str) -> RouterError:
    return RouterError(404, f"No route for {path}.", code="not_found")


def too_large(limit: int) -> RouterError:
    return RouterError(
        413, f"The request body is larger than {limit} bytes.", code="request_too_large"
    )


def rate_limited(tenant: str, reason: str, retry_after: int) -> RouterError:
    what = "requests per second" if reason == "rate" else "concurrent requests"
    return RouterError(
        429,
        f"Tenant {tenant!r} is over its limit of {what}; retry after {retry_after}s.",
        type="rate_limit_error",
        code="rate_limit_exceeded",
        headers={"Retry-After": str(retry_after)},
    )


def no_replica(message: str, retry_after: int = 1) -> RouterError:
    return RouterError(
        503,
        message,
        type="server_error",
        code="no_replica",
        headers={"Retry-After": str(retry_after)},
    )


def upstream_failed(replica: str, err: Exception) -> RouterError:
    return RouterError(
        502,
        f"replica {replica} failed while answering: {err}",
        type="server_error",
        code="upstream_failed",
    )


def internal() -> RouterError:
    return RouterError(
        500, "internal error in the router", type="server_error", code="internal_error"
    )
