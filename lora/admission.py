"""The scheduler's LoRA rule: which waiting requests a step may admit, as a pure function.

Every running request's adapter holds a device slot, so a step never holds more distinct
adapters than `max_loras`: a waiting request whose adapter is neither running nor can
take a free slot waits. Alone, that would starve it while the running adapters keep
receiving requests (their slots never drain). So each refused request counts the steps
it was passed over; once the oldest such count reaches `max_passes`, later requests of
the running adapters wait too, until one adapter drains and its slot goes to the starved
request. Base-model requests need no slot and are never held back here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

MAX_PASSES = 16  # steps a request may be passed over for a slot before the others drain


@dataclass(frozen=True, slots=True)
class WaitingLoRA:
    adapter: str | None  # None: the base model
    passed_over: int = 0  # steps this rule has refused it so far (the scheduler counts)


def admit_by_adapter(
    running: Iterable[str | None],
    waiting: Sequence[WaitingLoRA],
    max_loras: int,
    max_passes: int = MAX_PASSES,
) -> list[bool]:
    """For each waiting request, in the scheduler's order (priority, then arrival), whether
    the slot rule lets this step admit it. The scheduler applies its other limits (token
    budget, KV blocks) to the admitted ones and counts `passed_over` for the refused."""
    if max_loras < 1:
        raise ValueError(f"max_loras must be at least 1, got {max_loras}")
    active = {adapter for adapter in running if adapter is not None}
    if len(active) > max_loras:
        raise ValueError(f"{len(active)} adapters running with {max_loras} slots")
    admitted, draining = [], False
    for request in waiting:
        if request.adapter is None:
            admitted.append(True)
        elif request.adapter in active:
            admitted.append(not draining)
        elif len(active) < max_loras:
            active.add(request.adapter)
            admitted.append(True)
        else:
            admitted.append(False)
            draining = draining or request.passed_over >= max_passes
    return admitted
