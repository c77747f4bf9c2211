"""kopf's part for adapters: events enqueue adapter keys (nothing here writes).

A LoRAAdapter's own events enqueue it and every other adapter aimed at the same service
(a deleted holder of a served name frees it for the next); a pod event of a service
enqueues the service's adapters, so a new, restarted or replaced replica is given every
adapter of the set as soon as it is ready (it has read the set at start already); a
namespace event reconciles the services that admit namespaces by label, and its adapters.
"""

from __future__ import annotations

from typing import Any

import kopf

from infleet.api import GROUP, VERSION
from infleet.api.lora_adapter import PLURAL
from infleet.operator.cache import CHILD_SELECTOR
from infleet.operator.names import SERVICE_LABEL


@kopf.on.event(GROUP, VERSION, PLURAL)
async def adapter_event(
    namespace: str, name: str, body: kopf.Body, memo: kopf.Memo, **kwargs: Any
) -> None:
    memo.runtime.adapter_seen((namespace, name), dict(body), kwargs)


@kopf.on.event("", "v1", "namespaces")
async def namespace_event(name: str, memo: kopf.Memo, **kwargs: Any) -> None:
    # engine.lora.namespaceSelector: a relabelled namespace may gain or lose its API key.
    memo.runtime.namespace_seen(name, kwargs)


@kopf.on.event("", "v1", "pods", labels=CHILD_SELECTOR)
async def pod_event(namespace: str, labels: kopf.Labels, memo: kopf.Memo, **kwargs: Any) -> None:
    memo.runtime.service_pods_seen((namespace, labels[SERVICE_LABEL]), kwargs)
