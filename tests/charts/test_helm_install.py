"""`helm install` and `helm upgrade` into the local control plane: the CRDs and objects are
accepted, NOTES tells the truth, the Prometheus Operator objects appear once its API does, and
the argocd-cm command NOTES prints really merges the health check."""

import re
import subprocess

import pytest
import yaml

from tests.charts.paths import CHART, HEALTH_LUA, HERE, RULES, tool
from tests.localplane.harness import RunningPlane

RELEASE, NAMESPACE = "infleet-operator", "infleet-system"


def helm_in(plane: RunningPlane, *args: str) -> str:
    out = subprocess.run(
        [tool("helm"), *args], env=plane.env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def notes_command(notes: str) -> str:
    """The argocd-cm patch command NOTES prints (two lines joined by a backslash)."""
    m = re.search(r"^  (kubectl -n argocd patch .*\\\n.*)$", notes, flags=re.MULTILINE)
    assert m, notes
    return m[1]


@pytest.mark.slow
def test_install_then_upgrade_when_the_prometheus_operator_api_appears(audited_plane):
    plane, _ = audited_plane
    notes = helm_in(plane, "install", RELEASE, str(CHART), "-n", NAMESPACE, "--create-namespace")
    assert "It watches InferenceServices in every namespace (rbac.mode: cluster)." in notes
    assert "The cluster serves no monitoring.coreos.com/v1 API" in notes
    crd = plane.get("crd", "inferenceservices.infleet.io")
    assert crd["spec"]["names"]["shortNames"]
    deployment = plane.get("deployment", RELEASE, "-n", NAMESPACE)
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == RELEASE
    assert plane.kubectl("get", "servicemonitors", "-A", check=False).returncode != 0

    plane.kubectl("apply", "-f", str(HERE / "prometheus_operator_crds.yaml"))
    plane.wait_for(
        lambda: plane.kubectl("get", "prometheusrules", "-A", check=False).returncode == 0,
        what="monitoring.coreos.com/v1 served",
    )
    notes = helm_in(plane, "upgrade", RELEASE, str(CHART), "-n", NAMESPACE)
    assert "ServiceMonitor: created" in notes and "PrometheusRule: created" in notes
    rule = plane.get("prometheusrule", RELEASE, "-n", NAMESPACE)
    assert rule["spec"] == yaml.safe_load(RULES.read_text())
    monitor = plane.get("servicemonitor", RELEASE, "-n", NAMESPACE)
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True

    plane.kubectl("create", "namespace", "argocd")
    plane.kubectl(
        "create", "configmap", "argocd-cm", "-n", "argocd", "--from-literal=url=https://cd"
    )
    subprocess.run(["bash", "-c", notes_command(notes)], env=plane.env, check=True, timeout=60)
    data = plane.get("configmap", "argocd-cm", "-n", "argocd")["data"]
    assert (
        data["resource.customizations.health.infleet.io_InferenceService"] == HEALTH_LUA.read_text()
    )
    assert data["url"] == "https://cd"  # merged, not replaced
