"""The real operator, run against the local control plane: every API request it makes is
allowed by the chart's (cluster-mode) RBAC, and none escapes the needs test_rbac.py derives
from its code. The plane's audit log (conftest.py) records each request as Kubernetes'
authorizer sees it while `infleet operator` creates, updates and deletes an InferenceService.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.charts.conftest import attributes
from tests.charts.helm import one, render
from tests.charts.operator_needs import operator_needs
from tests.charts.paths import CHART
from tests.charts.test_rbac import granted, lease_role
from tests.localplane.harness import RunningPlane
from tests.operator.samples import body

# The operator's own clients, kopf's and the kubernetes client's, name themselves so.
OPERATOR_AGENT = "infleet-operator/"


def observed_generation(plane: RunningPlane) -> int | None:
    status = plane.get("inferenceservice", "chat", "-n", "team-a").get("status") or {}
    return status.get("observedGeneration")


@pytest.mark.slow
def test_operator_requests_are_exactly_allowed_by_the_chart(audited_plane):
    plane, log = audited_plane
    plane.kubectl("apply", "-f", str(CHART / "crds"))
    plane.kubectl("create", "namespace", "team-a")
    spot = {"spot": {"enabled": True, "preset": "gke"}}
    sample = body("chat", "team-a", capacity=spot, router={"enabled": True})
    proc = subprocess.Popen(
        [sys.executable, "-m", "infleet", "operator", "--all-namespaces",
         "--metrics-port=0", "--liveness-port=0", "--lease-name=infleet-operator"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=plane.env, start_new_session=True,
    )  # fmt: skip
    try:
        plane.apply(sample)
        plane.wait_for(lambda: observed_generation(plane) == 1, timeout=60, what="first reconcile")
        plane.kubectl("get", "deployment", "chat-spot", "-n", "team-a")
        plane.kubectl("patch", "inferenceservice", "chat", "-n", "team-a", "--type=merge",
                      "-p", '{"spec": {"scaling": {"maxReplicas": 6}}}')  # fmt: skip
        plane.wait_for(lambda: observed_generation(plane) == 2, timeout=60, what="update reconcile")
        plane.kubectl("patch", "inferenceservice", "chat", "-n", "team-a", "--type=merge",
                      "-p", '{"spec": {"capacity": {"spot": {"enabled": false}}, '
                      '"router": {"enabled": false}}}')  # fmt: skip
        plane.wait_for(
            lambda: not plane.kubectl("get", "deployment", "chat-spot", "-n", "team-a", check=False)
            .stdout, timeout=60, what="the spot pool's Deployment pruned",
        )  # fmt: skip
        plane.kubectl("delete", "inferenceservice", "chat", "-n", "team-a", "--timeout=30s")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    made = {n for r in log if r.user_agent.startswith(OPERATOR_AGENT) for n in attributes(r)}
    assert ("infleet.io", "inferenceservices/status", "patch") in made  # the operator did run
    assert ("coordination.k8s.io", "leases", "update") in made  # and led
    assert ("apps", "deployments", "delete") in made  # and pruned
    assert ("rbac.authorization.k8s.io", "roles", "create") in made  # and ran a router
    assert ("rbac.authorization.k8s.io", "rolebindings", "delete") in made  # then pruned it

    # The release namespace is where the lease lives; here the operator ran in `default`.
    chart = render("--set", "fullnameOverride=infleet-operator")
    allowed = granted(one(chart, "ClusterRole")) | granted(lease_role(chart))
    assert sorted(made - allowed) == [], "the operator made requests the chart forbids"
    needs = operator_needs()
    assert sorted(made - set().union(*needs.values())) == [], (
        "operator_needs.py misses requests the operator really makes"
    )
