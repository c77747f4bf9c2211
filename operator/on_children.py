"""The child watch: status follows readiness, and a hand-edited child is put back.

Any event on a labelled child re-runs its parent's reconcile; applying unchanged
children is a no-op on the server, so this settles instead of looping.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from infleet.operator.names import MANAGED_BY, SERVICE_LABEL
from infleet.operator.on_service import run_reconcile

CHILD_KINDS = (
    ("apps", "v1", "deployments"),
    ("", "v1", "services"),
    ("", "v1", "configmaps"),
    ("policy", "v1", "poddisruptionbudgets"),
)


def on_child_event(
    namespace: str, labels: kopf.Labels, memo: kopf.Memo, logger: logging.Logger, **_: Any
) -> None:
    # A fresh read, not a cached copy: its status is what this reconcile compares against.
    parent = memo.runtime.kube.get_inference_service(namespace, labels[SERVICE_LABEL])
    if parent is not None:  # None: the parent is gone and the garbage collector acts
        run_reconcile(parent, memo.runtime, logger)


for _group, _version, _plural in CHILD_KINDS:
    kopf.on.event(
        _group,
        _version,
        _plural,
        labels={MANAGED_BY: "infleet", SERVICE_LABEL: kopf.PRESENT},
    )(on_child_event)
