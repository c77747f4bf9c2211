"""The wire format of what an engine replica publishes for the router (version 1).

Two HTTP endpoints on the engine (docs/router.md has the prose and examples):

- `GET /router/state`: a `Snapshot` as JSON, the whole state at once.
- `GET /router/events`: server-sent events; the first is `snapshot`, then deltas
  (`load`, `stored`, `evicted`, `cleared`, `adapters`, `draining`), each with the next
  `seq`. A follower that sees a gap in `seq`, or a new `epoch` (the engine restarted,
  its cache empty), reconnects and starts again from a snapshot.

Prefix keys are router/prefix_keys.py's (SCHEME, "infleet-text-v1"), 16 hex digits each: the
router sends a request's keys to the replica in the `x-infleet-prefix-keys` header, and
the engine reports them stored once that request's prompt is in its KV cache and evicted
when the blocks under them go (key i of n lies in prompt block ceil((i+1)·B/n)-1 of B:
proportional, which keeps the chain order that matters).

Pydantic only, no other infleet import: the engine (engine/server/router_feed.py) builds
these same models and the router (router/follower.py) parses them, so it lives in `api/`,
which both may import.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

VERSION = 1
SCHEME = "infleet-text-v1"  # how prompts become keys: router/prefix_keys.py
STATE_PATH = "/router/state"
EVENTS_PATH = "/router/events"
PREFIX_KEYS_HEADER = "x-infleet-prefix-keys"

HexKey = Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")]


class WireError(ValueError):
    """A message that does not follow this format."""


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)  # newer engines may add fields
    seq: int = Field(ge=0)


class Load(_Message):
    type: Literal["load"] = "load"
    waiting: int = Field(ge=0, description="requests queued for admission")
    running: int = Field(ge=0, description="requests in the running batch")
    kv_usage: float = Field(ge=0, le=1, description="fraction of KV blocks held")


class Snapshot(Load):
    type: Literal["snapshot"] = "snapshot"  # type: ignore[assignment]
    version: Literal[1] = VERSION
    scheme: Literal["infleet-text-v1"] = SCHEME
    epoch: str = Field(min_length=1, description="new on every engine start")
    model: str
    adapters: list[str] = Field(default_factory=list, description="LoRA adapters loaded")
    kv_capacity_tokens: int = Field(ge=0, description="tokens the KV cache holds")
    draining: bool = False
    keys: list[HexKey] = Field(
        default_factory=list, description="prefix keys cached, in chain order (roots first)"
    )


class Stored(_Message):
    type: Literal["stored"] = "stored"
    keys: list[HexKey]


class Evicted(_Message):
    type: Literal["evicted"] = "evicted"
    keys: list[HexKey]


class Cleared(_Message):
    type: Literal["cleared"] = "cleared"


class Adapters(_Message):
    type: Literal["adapters"] = "adapters"
    adapters: list[str]


class Draining(_Message):
    type: Literal["draining"] = "draining"


Event = Annotated[
    Snapshot | Load | Stored | Evicted | Cleared | Adapters | Draining,
    Field(discriminator="type"),
]
_EVENT: TypeAdapter[Event] = TypeAdapter(Event)


def parse_event(event_type: str, data: str) -> Event:
    """One SSE message (`event:` line, `data:` payload) into its model."""
    try:
        payload = json.loads(data)
        if not isinstance(payload, dict):
            raise WireError(f"{event_type}: the data is not a JSON object")
        return _EVENT.validate_python({**payload, "type": event_type})
    except (json.JSONDecodeError, ValidationError) as err:
        raise WireError(f"{event_type}: {err}") from None


def encode_event(event: Event) -> bytes:
    """The SSE bytes of one event (what an engine writes)."""
    data = event.model_dump_json(exclude={"type"})
    return f"event: {event.type}\ndata: {data}\n\n".encode()
