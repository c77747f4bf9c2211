"""Kubernetes versions: the oldest the operator supports, and the fields that need newer.

The chart's `kubeVersion` admits OLDEST and newer (tests/charts hold the two equal); the
operator reads the API server's version (`/version`) and renders a version-dependent field
only where the server has it; tests validate every rendered child against the strict
schemas of each minor from OLDEST on.
"""

from __future__ import annotations

import re

KubeVersion = tuple[int, int]  # (major, minor)

OLDEST: KubeVersion = (1, 27)
# lifecycle.preStop.sleep (KEP-3960): alpha in 1.29 (off: the API server drops the field,
# leaving no drain at all), beta and on by default from 1.30.
PRESTOP_SLEEP: KubeVersion = (1, 30)


def parse_version(major: str, minor: str) -> KubeVersion:
    """/version's strings ("1", "31+" on some managed clusters) as numbers."""
    digits = [re.match(r"\d+", part) for part in (major, minor)]
    if not all(digits):
        raise ValueError(f"not a Kubernetes version: major {major!r}, minor {minor!r}")
    return int(digits[0].group()), int(digits[1].group())  # type: ignore[union-attr]


def has(server: KubeVersion | None, feature: KubeVersion) -> bool:
    """Whether a server of this version has a field added in `feature`; None: the newest."""
    return server is None or server >= feature
