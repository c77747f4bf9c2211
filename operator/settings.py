"""kopf settings applied at startup.

kopf keeps its bookkeeping in annotations under infleet.io (our status schema prunes
unknown fields, so kopf's default status storage would be lost).
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from infleet.api import GROUP
from infleet.operator.indexes import CHILD_SELECTOR

MAX_SYNC_WORKERS = 16
CONSISTENCY_TIMEOUT_S = 60.0
CHILD_KINDS = (
    ("apps", "v1", "deployments"),
    ("", "v1", "services"),
    ("", "v1", "configmaps"),
    ("policy", "v1", "poddisruptionbudgets"),
)
# The handlers' label filter (indexes.CHILD_SELECTOR) as a server-side selector string.
CHILD_LABEL_SELECTOR = ",".join(
    key if value is kopf.PRESENT else f"{key}={value}" for key, value in CHILD_SELECTOR.items()
)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{GROUP}/operator"
    # Our decisions are posted as Events explicitly (kopf.event); kopf's own handler
    # chatter ("Handler ... succeeded") is not: at 1,000 services it was two Event
    # writes per change for nothing a user acts on. Its warnings and errors still are.
    settings.posting.level = logging.WARNING
    settings.execution.max_workers = MAX_SYNC_WORKERS
    settings.watching.server_timeout = 300
    # After patching its annotations kopf waits for the watch to show that version before
    # it looks at the object again; when the API server is busy and the wait (5 s by
    # default) runs out, it runs the create/update handler a second time. At 100+
    # services on a busy control plane a third of the reconciles were such repeats.
    settings.persistence.consistency_timeout = CONSISTENCY_TIMEOUT_S
    # Filter the child and pod watches on the server: kopf otherwise streams every
    # Deployment, Service, ConfigMap, PDB and Pod of the cluster and drops the ones without our labels.
    for kind in (*CHILD_KINDS, ("", "v1", "pods")):
        settings.watching.label_selectors[kind] = CHILD_LABEL_SELECTOR
