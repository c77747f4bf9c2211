"""The Argo CD health check of LoRAAdapter, run by lua5.4 over the statuses the operator's
own status code computes (operator/lora_status.py), for each state an adapter goes through."""

from __future__ import annotations

from pathlib import Path

import pytest

from infleet.operator.lora_status import Observed, adapter_status
from infleet.operator.status import Problem
from tests.charts.helm import render
from tests.charts.test_argocd_health import run_health

KEY = "resource.customizations.health.infleet.io_LoRAAdapter"


@pytest.fixture(scope="module")
def script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = next(o for o in render() if o["metadata"]["name"].endswith("-argocd-health"))
    path = tmp_path_factory.mktemp("argocd") / "lora.lua"
    path.write_text(config["data"][KEY])
    return path


def adapter(generation: int, observed: Observed | None) -> dict:
    obj = {"metadata": {"name": "a", "namespace": "t", "generation": generation}, "spec": {}}
    if observed is not None:
        obj["status"] = adapter_status({}, observed, "2026-01-01T00:00:00Z")
    return obj


def seen(replicas: int, loaded: int, problem: Problem | None = None, gen: int = 2) -> Observed:
    return Observed(gen, "p/base", "a", problem, 8, "sha256:ab", 10, replicas, loaded)


@pytest.mark.parametrize(
    ("obj", "status", "message"),
    [
        (adapter(2, None), "Progressing", "Waiting for the infleet operator to report status"),
        (adapter(3, seen(2, 2)), "Progressing", "Waiting for the operator to observe generation 3 (status is for 2)"),
        (adapter(2, seen(2, 2)), "Healthy", "Loaded: loaded on 2/2 ready replicas of p/base"),
        (adapter(2, seen(2, 1)), "Progressing", "Loading: loaded on 1/2 ready replicas of p/base"),
        (adapter(2, Observed(2, "p/base", "a", None, replicas=2, fetching="uploading from pvc://c (Job t/j)")), "Progressing", "Fetching: uploading from pvc://c (Job t/j)"),
        (adapter(2, seen(0, 0)), "Progressing", "NoReadyReplicas: p/base has no ready replica to serve it"),
        (adapter(2, seen(2, 0, Problem("NameConflict", "servedName 'a' is taken"))), "Degraded", "NameConflict: servedName 'a' is taken"),
    ],
)  # fmt: skip
def test_health_of_the_operators_statuses(script: Path, obj: dict, status: str, message: str):
    assert run_health(script, obj) == (status, message)
