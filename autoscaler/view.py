"""The policy's view of a fleet at one instant: engine metrics per replica, pods per pool.

Every engine kind (infleet, vLLM, SGLang, TGI) is mapped onto `ReplicaMetrics` by
`infleet.autoscaler.engines`; the simulator fills the same types, so the policy cannot
tell a simulated fleet from a real one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

POOLS = ("dedicated", "spot")


@dataclass(slots=True)
class ReplicaMetrics:
    pod: str
    pool: str
    waiting: float
    running: float
    kv_usage: float | None = None  # 0..1; None where the engine does not export it
    preemptions_total: float | None = None  # counter: requests preempted (KV pressure)
    requests_total: float | None = None  # counter: requests finished

    @property
    def depth(self) -> float:
        return self.waiting + self.running


# Pod phases as the policy sees them: scheduled-but-unschedulable pods are "pending",
# scheduled pods loading the model are "starting", pods passing readiness are "ready".
PENDING, STARTING, READY = "pending", "starting", "ready"


@dataclass(slots=True)
class PodState:
    name: str
    pool: str
    phase: str
    since: float  # when the pod entered its phase (seconds, the observation's clock)
    notice: bool = False  # the node is being reclaimed: the pod is about to go


@dataclass(slots=True)
class Observation:
    now: float
    replicas: list[ReplicaMetrics]
    pods: list[PodState]
    # Spot interruptions seen since the previous observation (their times).
    interruptions: list[float] = field(default_factory=list)
    # Requests held by an activator while no replica serves; None: no activator in front
    # of the service, so scaling to zero would drop requests.
    activator_waiting: float | None = None

    def ready(self, pool: str | None = None) -> int:
        return sum(1 for p in self.pods if p.phase == READY and (pool is None or p.pool == pool))
