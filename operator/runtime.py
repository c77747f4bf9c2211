"""What every handler needs at run time, carried in kopf's memo (no module globals)."""

from __future__ import annotations

from dataclasses import dataclass, field

from infleet.autoscaler.prometheus_api import PrometheusSource
from infleet.operator.kube import Kube
from infleet.operator.parents import ParentQueue
from infleet.operator.render import RenderOptions


@dataclass(slots=True)
class Runtime:
    kube: Kube
    fetcher_image: str
    engine_images: dict[str, str]
    parents: ParentQueue = field(default_factory=ParentQueue)
    prometheus: PrometheusSource | None = None  # None: scrape each pod's /metrics

    def options(self) -> RenderOptions:
        return RenderOptions(
            prometheus_operator=self.kube.prometheus_operator(),
            fetcher_image=self.fetcher_image,
            engine_images=self.engine_images,
        )
