"""The operator scale benchmark runs end to end at a tiny size, so it cannot rot."""

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

PHASE_FIELDS = {
    "send_seconds",
    "reconcile_latency_p50_s",
    "reconcile_latency_p99_s",
    "reconcile_latency_max_s",
    "ready_latency_p50_s",
    "ready_latency_p99_s",
    "time_to_all_ready_s",
    "time_to_all_settled_s",
    "operator_reconcile_p50_s",
    "operator_reconcile_p99_s",
    "reconciles_per_service",
    "operator_api_requests_per_service",
    "operator_cpu_s",
    "plane_cpu_s",
    "operator_rss_end_mb",
    "api_requests",
}


@pytest.mark.slow
def test_six_services_are_created_changed_and_all_ready(tmp_path) -> None:
    out = tmp_path / "scale.json"
    proc = subprocess.run(
        [sys.executable, "bench/operator_scale.py", "--services", "6", "--timeout", "60",
         "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(out.read_text())
    assert json.loads(proc.stdout) == result
    assert result["services"] == 6
    for phase in ("create", "update"):
        numbers = result[phase]
        assert set(numbers) == PHASE_FIELDS, phase
        # every service settled (the bench fails otherwise), in order of the milestones
        assert 0 < numbers["reconcile_latency_p50_s"] <= numbers["reconcile_latency_max_s"]
        assert numbers["ready_latency_p99_s"] <= numbers["time_to_all_ready_s"]
        assert numbers["time_to_all_ready_s"] <= numbers["time_to_all_settled_s"]
        assert 0 < numbers["operator_reconcile_p50_s"] <= numbers["operator_reconcile_p99_s"]
        assert numbers["reconciles_per_service"] >= 1
        # a Deployment per pool in the spec: dedicated for all six, spot for the four
        # (of the three mixes) that enable it
        assert numbers["api_requests"]["operator patch deployments"] >= 6 + 4
    assert result["create"]["api_requests"]["bench post inferenceservices"] == 6
    assert result["update"]["api_requests"]["bench patch inferenceservices"] == 6
    assert 30 < result["operator_rss_idle_mb"] <= result["operator_peak_rss_mb"] < 1000
    assert result["commit"] and result["machine"]["cpus"] >= 1
    assert "kopf" in result["machine"]["versions"]
    assert (tmp_path / "scale.operator.log").is_file()
