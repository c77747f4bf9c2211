"""Spot interruptions as an SLO: their history, their rate, and how fast they burn the budget.

`slo.spotPreemptionsPerReplicaHour` is a budget. Burn rate = interruptions per spot
replica-hour over the budget, over 5 minutes, 1 hour and 6 hours (the SRE multi-window
rule; `placement.next_shift` acts on it). Exposure is kept in one-minute buckets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from infleet.autoscaler.view import Observation
from infleet.autoscaler.windows import Buckets, Window

BURN_SHORT_S = 300.0
BURN_LONG_S = 3600.0
BURN_RECOVERY_S = 6 * 3600.0
EXPOSURE_BUCKET_S = 60.0


@dataclass(slots=True)
class SpotHistory:
    interruptions: Window  # (time, 1) per interruption
    exposure: Buckets  # seconds of ready spot replicas
    shift: float = 0.0  # dedicated share of the total while the budget burns

    @classmethod
    def fresh(cls) -> SpotHistory:
        return cls(Window(BURN_RECOVERY_S), Buckets(EXPOSURE_BUCKET_S, BURN_RECOVERY_S))

    def copy(self) -> SpotHistory:
        return SpotHistory(self.interruptions.copy(), self.exposure.copy(), self.shift)

    def record(self, obs: Observation, elapsed_s: float) -> float:
        """Adds the observation's interruptions and the exposure since the previous one
        (returned: the exporter's counter grows by it)."""
        exposure = obs.ready("spot") * elapsed_s
        self.exposure.add(obs.now, exposure)
        for t in obs.interruptions:
            self.interruptions.add(t, 1.0)
        return exposure

    def rate(self, now: float, window_s: float, min_exposure_h: float) -> float:
        """Interruptions per spot replica-hour over the window. The exposure floor keeps
        one interruption on a tiny fleet from reading as a storm."""
        count = self.interruptions.total(now, window_s)
        hours = self.exposure.total(now, window_s) / 3600.0
        return count / max(hours, min_exposure_h)

    def recent(self, now: float, window_s: float) -> int:
        return round(self.interruptions.total(now, window_s))


def burns(budget: float, history: SpotHistory, now: float) -> tuple[float, float, float]:
    """Burn rates over 5 minutes, 1 hour and 6 hours.

    Exposure floors: the long windows need the exposure in which the budget allows three
    interruptions, so one unlucky interruption does not read as a storm; the short window
    only confirms the burn is still going on. A zero budget burns on any interruption.
    """
    out = []
    for window, allowed in ((BURN_SHORT_S, 0.5), (BURN_LONG_S, 3.0), (BURN_RECOVERY_S, 3.0)):
        floor = allowed / budget if budget > 0 else 1.0
        rate = history.rate(now, window, floor)
        out.append(rate / budget if budget > 0 else (math.inf if rate > 0 else 0.0))
    return out[0], out[1], out[2]
