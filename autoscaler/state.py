"""What the policy remembers between decisions, and its snapshot for a restart.

`snapshot` and `restore` are pure: the state as a small versioned JSON-able dict (a few
KB: learned capacity, lead time, spot burn history, the stabilization and burst windows,
the last decision) and back. The per-replica counters and the one-minute load windows
are left out: they are stale after a restart anyway, and the restored policy reads a full
stable window before it scales anything down. A snapshot of another version is refused
(`ValueError`); the caller then starts cold, which the cold-start rule makes safe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from infleet.autoscaler.capacity import CapacityModel
from infleet.autoscaler.damping import Damping
from infleet.autoscaler.load import FleetWindows
from infleet.autoscaler.signals import Counters
from infleet.autoscaler.spec import PolicySpec
from infleet.autoscaler.spot_burn import SpotHistory
from infleet.autoscaler.windows import Window

SNAPSHOT_VERSION = 2  # 2: bursts remember their arrival rate, not replicas


@dataclass(slots=True)
class PolicyState:
    """All times on the observation clock; the windows' spans are set from the spec by
    `for_spec` at every decision."""

    counters: Counters = field(default_factory=dict)
    fleet: FleetWindows = field(default_factory=lambda: FleetWindows.over(0.0))
    capacity: CapacityModel = field(default_factory=CapacityModel)
    damping: Damping = field(default_factory=Damping.empty)
    spot: SpotHistory = field(default_factory=SpotHistory.fresh)
    lead_time_s: float | None = None  # measured pod start + model load
    total: int | None = None  # the last decision (None: never decided: a cold start)
    pools: tuple[int, int] | None = None  # its dedicated and spot replicas
    first_now: float | None = None
    last_now: float | None = None
    last_active: float | None = None  # a request held or finished
    last_read: float | None = None  # the fleet was read (not blind)
    watched_since: float | None = None  # read without a gap since (None: not yet)

    def for_spec(self, spec: PolicySpec) -> PolicyState:
        """A copy to decide with (a decision never changes the state it was given), its
        windows spanning what this spec asks for."""
        fleet, damping = self.fleet.copy(), self.damping.copy()
        for w in fleet.all():
            w.span_s = spec.tuning.stable_window_s
        for mine, span in zip(damping.windows(), Damping.spans(spec), strict=True):
            mine.span_s = span
        return PolicyState(
            dict(self.counters),
            fleet,
            self.capacity.copy(),
            damping,
            self.spot.copy(),
            self.lead_time_s,
            self.total,
            self.pools,
            self.first_now,
            self.last_now,
            self.last_active,
            self.last_read,
            self.watched_since,
        )


def _r(x: float | None, digits: int = 1) -> float | None:
    return None if x is None else round(x, digits)


def _pairs(w: Window, digits: int = 1) -> list[list[float]]:
    return [[round(t, 1), round(v, digits)] for t, v in w.samples]


def snapshot(state: PolicyState) -> dict[str, Any]:
    d, spot = state.damping, state.spot
    sums = spot.exposure.sums
    first = min(sums) if sums else 0
    return {
        "v": SNAPSHOT_VERSION,
        "total": state.total,
        "pools": list(state.pools) if state.pools else None,
        "leadTimeS": _r(state.lead_time_s),
        "capacity": {k: [round(f, 4), round(t, 1)] for k, (f, t) in state.capacity.factors.items()},
        "spot": {
            "shift": round(spot.shift, 4),
            "interruptions": [round(t, 1) for t, _ in spot.interruptions.samples],
            "exposure": [first, [round(sums.get(i, 0.0), 1) for i in range(first, max(sums, default=-1) + 1)]],
        },
        "damping": {
            "recommendations": _pairs(d.recommendations, 0),
            "totals": _pairs(d.totals, 0),
            "bursts": _pairs(d.bursts, 0),
            "panicUntil": d.panic_until if d.panic_until > float("-inf") else None,
            "floor": list(d.floor) if d.floor else None,
        },
        "clock": [_r(state.first_now), _r(state.last_now), _r(state.last_active), _r(state.last_read)],
    }  # fmt: skip


def restore(data: dict[str, Any]) -> PolicyState:
    """The state a snapshot holds; ValueError when it is not one of this version."""
    version = data.get("v") if isinstance(data, dict) else None
    if version != SNAPSHOT_VERSION:
        raise ValueError(
            f"autoscaler state snapshot version {version!r}, expected {SNAPSHOT_VERSION}"
        )
    try:
        cap, spot, damp = data["capacity"], data["spot"], data["damping"]
        history = SpotHistory.fresh()
        history.shift = float(spot["shift"])
        for t in spot["interruptions"]:
            history.interruptions.add(float(t), 1.0)
        first, values = spot["exposure"]
        history.exposure.sums = {int(first) + i: float(v) for i, v in enumerate(values) if v}
        damping = Damping(
            *(
                Window(0.0, [(float(t), float(v)) for t, v in damp[key]])
                for key in ("recommendations", "totals", "bursts")
            ),
            float("-inf") if damp["panicUntil"] is None else float(damp["panicUntil"]),
            tuple(damp["floor"]) if damp["floor"] else None,  # type: ignore[arg-type]
        )
        first_now, last_now, last_active, last_read = data["clock"]
        return PolicyState(
            capacity=CapacityModel({str(k): (float(f), float(t)) for k, (f, t) in cap.items()}),
            damping=damping,
            spot=history,
            lead_time_s=data["leadTimeS"],
            total=data["total"],
            pools=tuple(data["pools"]) if data["pools"] else None,  # type: ignore[arg-type]
            first_now=first_now,
            last_now=last_now,
            last_active=last_active,
            last_read=last_read,
        )
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"autoscaler state snapshot is malformed: {err!r}") from None
