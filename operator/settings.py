"""kopf settings applied at startup.

kopf keeps its bookkeeping in annotations under infleet.io (our status schema prunes
unknown fields, so kopf's default status storage would be lost).
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from infleet.api import GROUP

MAX_SYNC_WORKERS = 16


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{GROUP}/operator"
    settings.posting.level = logging.INFO
    settings.execution.max_workers = MAX_SYNC_WORKERS
    settings.watching.server_timeout = 300
