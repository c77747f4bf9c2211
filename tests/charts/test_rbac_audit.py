"""The real operator, run against the local control plane: every API request it makes is
allowed by the chart's (cluster-mode) RBAC, and none escapes the needs test_rbac.py derives
from its code. The plane's audit log (conftest.py) records each request as Kubernetes'
authorizer sees it while `infleet operator` creates, updates and deletes an InferenceService.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading

import pytest

from tests.charts.conftest import attributes
from tests.charts.helm import one, render
from tests.charts.operator_needs import operator_needs
from tests.charts.paths import CHART
from tests.charts.test_rbac import granted, lease_role
from tests.localplane.harness import RunningPlane
from tests.lora.written_adapters import adapter_files
from tests.operator.samples import body

# The operator's own clients, kopf's and the kubernetes client's, name themselves so.
OPERATOR_AGENT = "infleet-operator/"


def artifact_server() -> http.server.ThreadingHTTPServer:
    files = adapter_files(rank=4)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = files.get(self.path.rsplit("/", 1)[-1])
            if data is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def lora_adapter(server: http.server.ThreadingHTTPServer) -> dict:
    uri = f"http://127.0.0.1:{server.server_address[1]}/a"
    return {
        "apiVersion": "infleet.io/v1alpha1",
        "kind": "LoRAAdapter",
        "metadata": {"name": "a", "namespace": "team-b"},
        "spec": {"uri": uri, "credentialsSecretRef": {"name": "token"},
                 "inferenceServiceRef": {"name": "chat", "namespace": "team-a"}},
    }  # fmt: skip


def pvc_adapter() -> list[dict]:
    """Adapter `p` on claim `adapters` of team-b: the operator uploads it with a Job there."""
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "adapters", "namespace": "team-b"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    adapter = {
        "apiVersion": "infleet.io/v1alpha1",
        "kind": "LoRAAdapter",
        "metadata": {"name": "p", "namespace": "team-b"},
        "spec": {"uri": "pvc://adapters/p",
                 "inferenceServiceRef": {"name": "chat", "namespace": "team-a"}},
    }  # fmt: skip
    return [claim, adapter]


def adapter_checksum(plane: RunningPlane) -> str | None:
    status = plane.get("loraadapter", "a", "-n", "team-b").get("status") or {}
    return status.get("checksum")


def adapter_message(plane: RunningPlane, name: str) -> str:
    status = plane.get("loraadapter", name, "-n", "team-b").get("status") or {}
    return next((c["message"] for c in status.get("conditions") or [] if c["type"] == "Ready"), "")


def observed_generation(plane: RunningPlane) -> int | None:
    status = plane.get("inferenceservice", "chat", "-n", "team-a").get("status") or {}
    return status.get("observedGeneration")


@pytest.mark.slow
def test_operator_requests_are_exactly_allowed_by_the_chart(audited_plane):
    plane, log = audited_plane
    plane.kubectl("apply", "-f", str(CHART / "crds"))
    plane.kubectl("create", "namespace", "team-a")
    plane.kubectl("create", "namespace", "team-b")
    lora = {"lora": {"maxAdapters": 2, "allowedNamespaces": ["team-b"]}}
    spot = {"spot": {"enabled": True, "preset": "gke"}}
    sample = body("chat", "team-a", capacity=spot, engine=lora, router={"enabled": True})
    artifacts = artifact_server()
    proc = subprocess.Popen(
        [sys.executable, "-m", "infleet", "operator", "--all-namespaces",
         "--metrics-port=0", "--liveness-port=0", "--lease-name=infleet-operator"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=plane.env, start_new_session=True,
    )  # fmt: skip
    try:
        plane.apply(sample)
        plane.wait_for(lambda: observed_generation(plane) == 1, timeout=60, what="first reconcile")
        plane.kubectl("get", "deployment", "chat-spot", "-n", "team-a")
        # A tenant's adapter: its Secret read, the set created, its status written.
        plane.kubectl("create", "secret", "generic", "token", "-n", "team-b",
                      "--from-literal=BEARER_TOKEN=t")  # fmt: skip
        plane.apply(lora_adapter(artifacts))
        plane.wait_for(lambda: adapter_checksum(plane), timeout=60, what="adapter fetched")
        # A pvc:// adapter: the claim read, an upload Job and its token Secret created in
        # team-b, the Job read; this plane runs no pods, so the Job is failed here as the
        # Job controller would, and the operator reports it and deletes both.
        plane.apply(pvc_adapter())
        job = plane.wait_for(lambda: plane.get("jobs", "-n", "team-b")["items"], what="the Job")
        failed = {"conditions": [{"type": "Failed", "status": "True",
                                  "reason": "BackoffLimitExceeded", "message": "x"}]}  # fmt: skip
        plane.kubectl("patch", "job", job[0]["metadata"]["name"], "-n", "team-b",
                      "--subresource=status", "--type=merge", "-p", json.dumps({"status": failed}))  # fmt: skip
        plane.wait_for(lambda: "BackoffLimitExceeded" in adapter_message(plane, "p"), what="failed")
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
        artifacts.shutdown()
    made = {n for r in log if r.user_agent.startswith(OPERATOR_AGENT) for n in attributes(r)}
    assert ("infleet.io", "inferenceservices/status", "patch") in made  # the operator did run
    assert ("coordination.k8s.io", "leases", "update") in made  # and led
    assert ("apps", "deployments", "delete") in made  # and pruned
    assert ("rbac.authorization.k8s.io", "roles", "create") in made  # and ran a router
    assert ("rbac.authorization.k8s.io", "rolebindings", "delete") in made  # then pruned it
    assert ("infleet.io", "loraadapters/status", "patch") in made  # and onboarded
    assert ("", "secrets", "get") in made and ("", "secrets", "create") in made
    assert ("", "persistentvolumeclaims", "get") in made  # and uploaded from a claim
    assert {("batch", "jobs", v) for v in ("create", "get", "delete")} <= made
    assert ("", "secrets", "delete") in made

    # The release namespace is where the lease lives; here the operator ran in `default`.
    chart = render("--set", "fullnameOverride=infleet-operator")
    allowed = granted(one(chart, "ClusterRole")) | granted(lease_role(chart))
    assert sorted(made - allowed) == [], "the operator made requests the chart forbids"
    needs = operator_needs()
    assert sorted(made - set().union(*needs.values())) == [], (
        "operator_needs.py misses requests the operator really makes"
    )
