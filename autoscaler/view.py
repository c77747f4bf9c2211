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
    prompt_tokens_total: float | None = None  # counter: prompt tokens prefilled
    generation_tokens_total: float | None = None  # counter: output tokens generated

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
    created: float | None = None  # when the pod was created (times its start-up)


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
    # The service's p95 TTFT from a source other than the replicas' own metrics (a
    # Prometheus recording rule): the evidence a fleet whose replicas cannot be read may
    # still scale up on. None: no such source, or it did not answer either.
    ttft_p95_s: float | None = None
    # Replicas the pool Deployments ask for now (loading pods included); None: count the
    # pods listed. A policy that starts cold never scales below it within its window.
    desired: int | None = None

    def ready(self, pool: str | None = None) -> int:
        return sum(1 for p in self.pods if p.phase == READY and (pool is None or p.pool == pool))

    def serving(self) -> list[PodState]:
        """Ready pods not under an interruption notice: where requests go."""
        return [p for p in self.pods if p.phase == READY and not p.notice]

    def unknown(self) -> list[str]:
        """Serving pods whose metrics are missing this time: unknown, never idle."""
        reported = {r.pod for r in self.replicas}
        return [p.name for p in self.serving() if p.name not in reported]
