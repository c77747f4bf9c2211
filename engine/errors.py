"""Request-level failures the engine reports and the server maps onto HTTP codes."""

from __future__ import annotations


class InvalidRequest(ValueError):
    """The request cannot be served as sent (HTTP 400); `param` names the offending field."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


class QueueFull(RuntimeError):
    """Too many requests are waiting (HTTP 429); retry after `retry_after` seconds."""

    def __init__(self, waiting: int, retry_after: int):
        super().__init__(f"the engine's queue is full ({waiting} requests waiting); retry later")
        self.retry_after = retry_after


class Draining(RuntimeError):
    """The server is shutting down and admits nothing new (HTTP 503)."""
