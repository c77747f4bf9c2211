"""The engine's last word to Kubernetes: a one-line termination message.

The kubelet copies the file at the container's `terminationMessagePath` (default
/dev/termination-log) into the terminated state, where the operator reads it
(`EngineRefusedModel` in Degraded). `INFLEET_TERMINATION_LOG` moves the file (tests,
a different terminationMessagePath); outside a pod the default path is not writable and
nothing is written.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_PATH = "/dev/termination-log"
ENV = "INFLEET_TERMINATION_LOG"
MAX_BYTES = 4096  # the kubelet keeps at most 4 KiB of the message


def write_termination_message(message: str) -> Path | None:
    """Write `message` where the kubelet looks; the path written, or None if it cannot be."""
    path = Path(os.environ.get(ENV) or DEFAULT_PATH)
    try:
        with path.open("w", encoding="utf-8") as f:
            f.write(message.encode()[:MAX_BYTES].decode(errors="ignore"))
    except OSError:
        return None
    return path
