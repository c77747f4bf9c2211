"""Paged attention: the per-step context, the attention op and its backends."""

from infleet.engine.attention.backends import AttentionBackend, available_backends, select_backend
from infleet.engine.attention.context import (
    AttentionContext,
    get_context,
    reset_context,
    set_context,
)
from infleet.engine.attention.layer import PagedAttention

__all__ = [
    "AttentionBackend",
    "AttentionContext",
    "PagedAttention",
    "available_backends",
    "get_context",
    "reset_context",
    "select_backend",
    "set_context",
]
