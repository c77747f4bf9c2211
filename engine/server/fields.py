"""The unknown-field policy of the OpenAI endpoints (docs/engine.md#request-fields).

Three kinds of top-level field beyond the ones we implement:
- OpenAI fields we do not implement: refused with a 400 naming the field (a client must
  never believe it got what it did not): `suffix`, `best_of` > 1, `echo` with logprobs,
  audio output, predicted outputs, web search, the deprecated `functions` /
  `function_call`, stored completions (`store: true`).
- OpenAI fields that change nothing a response means here: accepted and ignored on
  purpose (`user`, `metadata`, `service_tier`, `prompt_cache_key`, `safety_identifier`,
  `store: false`): the tenant comes from the API key, never from `user`.
- Fields OpenAI does not define either: ignored with a logged warning naming them, as
  vLLM does, so a client written for another server keeps working and its operator can
  see what was dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from infleet.engine.errors import InvalidRequest

log = logging.getLogger("infleet.engine.server")
IGNORED_ON_PURPOSE = frozenset(
    {"user", "metadata", "service_tier", "prompt_cache_key", "safety_identifier", "store"}
)
# field -> (what it asks for, whether this value asks for it)
REFUSED: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "suffix": ("suffix (insertion)", lambda v: v is not None),
    "best_of": ("best_of above 1", lambda v: v not in (None, 1)),
    "audio": ("audio output", lambda v: v is not None),
    "modalities": ("modalities other than text", lambda v: v not in (None, ["text"])),
    "prediction": ("predicted outputs", lambda v: v is not None),
    "web_search_options": ("web search", lambda v: v is not None),
    "functions": ("functions (deprecated: use tools)", lambda v: v is not None),
    "function_call": ("function_call (deprecated: use tool_choice)", lambda v: v is not None),
    "store": ("stored completions", lambda v: v is True),
}


def check_fields(model: type[BaseModel], req: Any, body: dict[str, Any]) -> None:
    """Refuse the unimplemented OpenAI fields; warn about ones no one defines."""
    if getattr(req, "echo", False) and getattr(req, "logprobs", None) is not None:
        raise InvalidRequest("echo with logprobs (prompt logprobs) is not supported", "echo")
    for name, (what, asks) in REFUSED.items():
        if asks(body.get(name)):
            raise InvalidRequest(f"{what} is not supported by this server", name)
    known = set(model.model_fields) | {f.alias for f in model.model_fields.values() if f.alias}
    unknown = sorted(set(body) - known - IGNORED_ON_PURPOSE - set(REFUSED))
    if unknown:
        log.warning("ignoring unknown request fields: %s", ", ".join(unknown))
