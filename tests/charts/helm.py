"""Runs the real helm binary over the chart; renders are cached per argument list."""

from __future__ import annotations

import functools
import subprocess
from typing import Any

import yaml

from tests.charts.paths import CHART, tool

RELEASE, NAMESPACE = "infleet", "infleet-system"
MONITORING = ("--api-versions", "monitoring.coreos.com/v1")
NAMESPACED = ("--set", "rbac.mode=namespaced", "--set", "rbac.watchNamespaces={team-a,team-b}")

# The value sets every structural test runs over: default, each RBAC mode, monitoring on/off.
VARIANTS: dict[str, tuple[str, ...]] = {
    "default": (),
    "cluster+monitoring": MONITORING,
    "namespaced": NAMESPACED,
    "namespaced+monitoring": NAMESPACED + MONITORING,
    "monitoring-disabled": (
        *MONITORING,
        *("--set", "serviceMonitor.enabled=false", "--set", "prometheusRule.enabled=false"),
    ),
    "no-rbac-no-argocd": (
        "--set",
        "rbac.create=false",
        "--set",
        "argocd.healthCheck.enabled=false",
    ),
}


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("helm"), *args], capture_output=True, text=True, timeout=60)


@functools.cache
def render(*args: str) -> tuple[dict[str, Any], ...]:
    """`helm template` of the chart (CRDs included) as parsed objects, in output order."""
    out = helm("template", RELEASE, str(CHART), "-n", NAMESPACE, "--include-crds", *args)
    assert out.returncode == 0, out.stderr
    return tuple(doc for doc in yaml.safe_load_all(out.stdout) if doc)


def by_kind(objects: tuple[dict[str, Any], ...], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: tuple[dict[str, Any], ...], kind: str) -> dict[str, Any]:
    found = by_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]
