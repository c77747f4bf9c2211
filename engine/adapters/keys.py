"""Per-tenant API keys: `--api-keys-file FILE`, a JSON map of sha256(key) hex -> tenant.

The operator writes it (the ConfigMap `<service>-api-keys`, hashes only) for a service that
admits other namespaces; each tenant's key is in its own namespace's Secret
`<service>-api-key`. The file is read again when it changes (a kubelet refreshes a mounted
ConfigMap within about a minute), so a newly admitted tenant needs no restart.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path

log = logging.getLogger("infleet.engine.adapters")


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeys:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._tenants: dict[str, str] = {}
        self._guard = threading.Lock()

    def tenant(self, key: str) -> str | None:
        """The tenant `key` belongs to, or None."""
        self._reload()
        return self._tenants.get(key_hash(key)) if key else None

    def _reload(self) -> None:
        try:
            st = os.stat(self.path)
        except OSError:
            return  # keep the last good map (a ConfigMap swap renames under us)
        stamp = (st.st_mtime_ns, st.st_size)
        with self._guard:
            if stamp == self._stamp:
                return
            try:
                raw = json.loads(self.path.read_text())
                tenants = {str(h): str(t) for h, t in raw.items()}
            except (OSError, ValueError, AttributeError) as err:
                log.error("--api-keys-file %s unreadable, keeping the last one: %s", self.path, err)
                return
            self._tenants, self._stamp = tenants, stamp
