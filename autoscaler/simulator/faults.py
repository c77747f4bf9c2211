"""Faults injected into a simulated run (`infleet simulate --fault KIND:ARGS`, repeatable).

- `metrics-blackout:START_S:DURATION_S`: no replica's metrics can be read (a
  NetworkPolicy, a Prometheus outage); pods stay visible through the Kubernetes API.
- `spot-reclaim-all:START_S`: every spot replica is reclaimed at once, with the market's
  notice.
- `provisioning-delay:START_S:DURATION_S:DELAY_S`: pods created in the window wait
  DELAY_S for a node instead of the usual provisioning time.

Times are seconds from the start of the measured run (t=0, after the warm-up).
"""

from __future__ import annotations

from dataclasses import dataclass

KINDS = {  # kind -> the arguments after it
    "metrics-blackout": ("START_S", "DURATION_S"),
    "spot-reclaim-all": ("START_S",),
    "provisioning-delay": ("START_S", "DURATION_S", "DELAY_S"),
}
RECLAIM_REPORT_S = 600.0  # a reclaim's window in the report: the ten minutes after it


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str
    start_s: float
    duration_s: float = 0.0
    delay_s: float = 0.0

    @property
    def end_s(self) -> float:
        span = RECLAIM_REPORT_S if self.kind == "spot-reclaim-all" else self.duration_s
        return self.start_s + span

    def active(self, t: float) -> bool:
        return self.start_s <= t < self.start_s + self.duration_s

    def text(self) -> str:
        args = {"metrics-blackout": (self.start_s, self.duration_s),
                "spot-reclaim-all": (self.start_s,),
                "provisioning-delay": (self.start_s, self.duration_s, self.delay_s)}[self.kind]  # fmt: skip
        return ":".join([self.kind, *(f"{a:g}" for a in args)])


def parse_fault(text: str) -> Fault:
    kind, _, rest = text.partition(":")
    if kind not in KINDS:
        raise ValueError(f"--fault {text!r}: the kind must be one of {', '.join(KINDS)}")
    names = KINDS[kind]
    parts = rest.split(":") if rest else []
    usage = ":".join([kind, *names])
    if len(parts) != len(names):
        raise ValueError(f"--fault {text!r}: want {usage}")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"--fault {text!r}: want {usage} (numbers of seconds)") from None
    for name, value in zip(names, values, strict=True):
        if value < 0 or value != value:
            raise ValueError(f"--fault {text!r}: {name} must be >= 0")
    if len(values) > 1 and values[1] <= 0:
        raise ValueError(f"--fault {text!r}: DURATION_S must be > 0")
    return Fault(kind, *values)


class FaultPlan:
    """The faults of one run, asked about by the fleet at every tick."""

    def __init__(self, faults: tuple[Fault, ...] = ()) -> None:
        self.faults = faults
        self._reclaims = sorted(f.start_s for f in faults if f.kind == "spot-reclaim-all")

    def blackout(self, t: float) -> bool:
        return any(f.kind == "metrics-blackout" and f.active(t) for f in self.faults)

    def provisioning_delay(self, t: float) -> float | None:
        delays = [f.delay_s for f in self.faults if f.kind == "provisioning-delay" and f.active(t)]
        return max(delays) if delays else None

    def reclaim_due(self, t: float, dt: float) -> bool:
        """A spot-reclaim-all falls in [t, t + dt)."""
        return any(t <= s < t + dt for s in self._reclaims)
