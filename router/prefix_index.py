"""Which replica holds which prefix keys: the router's model of the replicas' KV caches.

Fed two ways: from what the router itself sent where (approximate: it assumes a replica
keeps what it was sent, up to a budget), and, where an engine publishes its cache
(api/router_wire.py), from the engine's own stored/evicted keys, which replace the guesses.

Bounded: each replica keeps at most `capacity` keys (least recently used go first), set
from the replica's published KV size when known. A request's keys are recorded last key
first, so the shared roots of a conversation are the most recently used and are evicted
last: keys are chained, and a lost root would orphan everything after it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence

DEFAULT_CAPACITY = 16_384  # keys per replica: ~1M tokens of prompt at 64 tokens a key


class PrefixIndex:
    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.default_capacity = capacity
        self._keys: dict[str, OrderedDict[int, None]] = {}
        self._capacity: dict[str, int] = {}

    def __len__(self) -> int:
        return sum(len(keys) for keys in self._keys.values())

    def matched(self, replica: str, keys: Sequence[int]) -> int:
        """How many leading `keys` the replica holds (a chain stops at its first gap)."""
        held = self._keys.get(replica)
        if not held:
            return 0
        n = 0
        for key in keys:
            if key not in held:
                break
            n += 1
        return n

    def record(self, replica: str, keys: Sequence[int]) -> None:
        """The replica was sent (or stored) these keys: mark them most recently used."""
        held = self._keys.setdefault(replica, OrderedDict())
        for key in reversed(keys):
            held[key] = None
            held.move_to_end(key)
        self._trim(replica)

    def evict(self, replica: str, keys: Iterable[int]) -> None:
        held = self._keys.get(replica)
        if held:
            for key in keys:
                held.pop(key, None)

    def replace(self, replica: str, keys: Sequence[int]) -> None:
        """The replica's whole cache, as it published it (a snapshot, roots first): past
        the budget, the last keys are the ones left out."""
        self._keys[replica] = OrderedDict()
        self.record(replica, keys)

    def set_capacity(self, replica: str, capacity: int) -> None:
        self._capacity[replica] = max(capacity, 1)
        self._trim(replica)

    def forget(self, replica: str) -> None:
        """The replica is gone (or restarted empty)."""
        self._keys.pop(replica, None)
        self._capacity.pop(replica, None)

    def _trim(self, replica: str) -> None:
        held = self._keys.get(replica)
        if held is None:
            return
        limit = self._capacity.get(replica, self.default_capacity)
        while len(held) > limit:
            held.popitem(last=False)
