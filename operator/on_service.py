"""kopf handlers for InferenceService: thin shells over `reconcile`.

Replica counts come from status (the autoscaler) or the capacity split; nothing here
writes spec. Children carry owner references, so deletion is the garbage collector's job.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import kopf

from infleet.api import GROUP, PLURAL, VERSION
from infleet.operator.metrics import RECONCILE_DURATION, RECONCILE_ERRORS, RECONCILES
from infleet.operator.reconcile import Outcome, reconcile
from infleet.operator.runtime import Runtime

RETRY_SECONDS = 10


def finish(body: Any, outcome: Outcome, started: float, logger: logging.Logger | Any) -> None:
    """Metrics, Events and kopf's retry for one reconcile that began at `started`."""
    RECONCILE_DURATION.observe(time.perf_counter() - started)
    RECONCILES.labels(outcome.result).inc()
    for type_, reason, message in outcome.events:
        kopf.event(body, type=type_, reason=reason, message=message)
    if outcome.error is not None:
        RECONCILE_ERRORS.inc()
        raise kopf.TemporaryError(
            str(outcome.status["conditions"][-1]["message"]), delay=RETRY_SECONDS
        )
    if outcome.result == "invalid":
        logger.warning("invalid spec: %s", outcome.status["conditions"][-1]["message"])


def parent_key(body: Any) -> tuple[str, str]:
    meta = body["metadata"]
    return meta.get("namespace") or "default", meta["name"]


def run_reconcile(body: Any, runtime: Runtime, logger: logging.Logger | Any) -> None:
    key = parent_key(body)
    with runtime.parents.holding(key):
        started = time.perf_counter()
        outcome = reconcile(dict(body), runtime.kube, runtime.options())
        runtime.parents.remember(key, outcome.body)
    finish(body, outcome, started, logger)


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
def on_change(body: kopf.Body, memo: kopf.Memo, logger: logging.Logger, **_: Any) -> None:
    run_reconcile(body, memo.runtime, logger)


@kopf.on.delete(GROUP, VERSION, PLURAL, optional=True)
def on_delete(name: str, namespace: str, memo: kopf.Memo, logger: logging.Logger, **_: Any) -> None:
    # optional: no finalizer; owner references let the garbage collector remove children.
    memo.runtime.parents.forget((namespace, name))
    logger.info("InferenceService %s/%s deleted; children go with it", namespace, name)
