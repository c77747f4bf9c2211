"""kopf's part: watch events enqueue the service's key, as controller-runtime's event
handlers do. Nothing here writes: these handlers only hand keys to the controller
(operator/controller.py), whose workers reconcile on the leader alone.

Events of the InferenceService itself, of its labelled children (a Deployment's
readiness, a deleted or hand-edited child) and of the LoRAAdapters aimed at it enqueue it;
a deleted child's own write is forgotten first (operator/own_writes.py), so that reconcile
makes the child again. Its pods only feed the index the autoscale step reads (pod churn
would otherwise reconcile on every pod update).
"""

from __future__ import annotations

from typing import Any

import kopf
from pydantic import ValidationError

from infleet.api import GROUP, PLURAL, VERSION
from infleet.api.lora_adapter import LoRAAdapter
from infleet.operator.cache import CHILD_KINDS, CHILD_SELECTOR
from infleet.operator.names import SERVICE_LABEL


@kopf.on.event(GROUP, VERSION, PLURAL)
async def service_event(namespace: str, name: str, memo: kopf.Memo, **kwargs: Any) -> None:
    memo.runtime.seen((namespace, name), kwargs)


def _child_handler(kind: str) -> Any:
    async def child_event(
        namespace: str, labels: kopf.Labels, meta: kopf.Meta, memo: kopf.Memo, **kwargs: Any
    ) -> None:
        key = (namespace, labels[SERVICE_LABEL])
        if kwargs["type"] == "DELETED":
            memo.runtime.child_deleted(key, kind, dict(meta))
        memo.runtime.seen(key, kwargs)

    return child_event


@kopf.on.event(GROUP, VERSION, "loraadapters")
async def adapter_router_event(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    # Its service's router accepts the adapter's served name (operator/router.py).
    try:
        key = LoRAAdapter.model_validate(dict(body)).service_key()
    except ValidationError:
        return
    memo.runtime.seen(key, kwargs)


for _group, _version, _plural, _kind in CHILD_KINDS:
    kopf.on.event(_group, _version, _plural, labels=CHILD_SELECTOR)(_child_handler(_kind))


@kopf.on.startup()
def start(memo: kopf.Memo, **_: Any) -> None:
    memo.runtime.start()


@kopf.on.cleanup()
def stop(memo: kopf.Memo, **_: Any) -> None:
    memo.runtime.stop()
