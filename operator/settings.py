"""kopf settings applied at startup: kopf only watches, so it writes nothing.

With no change handlers (operator/watches.py has event handlers only) kopf keeps no
progress and adds no finalizer; posting is off (the reconcile posts its own Events,
through the fenced client); and every request of kopf's has a timeout, as ours do.
"""

from __future__ import annotations

from typing import Any

import kopf

from infleet.api import GROUP
from infleet.operator.cache import CHILD_KINDS, CHILD_SELECTOR
from infleet.operator.names import MANAGED_BY

WATCH_SERVER_TIMEOUT_S = 300  # the API server ends a watch after this; kopf re-opens it
# The handlers' label filter (CHILD_SELECTOR) as a server-side selector string.
CHILD_LABEL_SELECTOR = ",".join(
    key if value is kopf.PRESENT else f"{key}={value}" for key, value in CHILD_SELECTOR.items()
)
# kopf removes its finalizer from every object it watches when no handler needs one, and
# it would do so on every replica, leader or not. So it is given a name nothing carries;
# the leader's reconcile removes the old operator's finalizer (operator/reconcile.py).
UNUSED_FINALIZER = f"{GROUP}/kopf-unused"


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    timeout = memo.runtime.kube.timeout  # infleet operator --api-timeout
    settings.persistence.finalizer = UNUSED_FINALIZER
    settings.posting.enabled = False
    settings.networking.connect_timeout = timeout
    settings.networking.request_timeout = timeout
    settings.watching.connect_timeout = timeout
    settings.watching.server_timeout = WATCH_SERVER_TIMEOUT_S
    # A watch with no byte for this long is dead (an API server that stopped answering).
    settings.watching.client_timeout = WATCH_SERVER_TIMEOUT_S + timeout
    # Filter the child and pod watches on the server: kopf otherwise streams every
    # Deployment, Service, ConfigMap, PDB and Pod of the cluster and drops the ones
    # without our labels.
    for group, version, plural, _ in CHILD_KINDS:
        settings.watching.label_selectors[(group, version, plural)] = CHILD_LABEL_SELECTOR
    # Pods: the engines' and the routers' (which carry ROUTER_LABEL instead of SERVICE_LABEL).
    settings.watching.label_selectors[("", "v1", "pods")] = f"{MANAGED_BY}=infleet"
