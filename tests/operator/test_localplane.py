"""Reconcile and the kopf operator against an emulated API server (real HTTP, SSA, CEL).

The lead wires the full e2e suite through infleet.localplane; this checks the operator's
own I/O: server-side apply, owner references, status, the child watch, Events, metrics.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml

from infleet.operator.kube import Kube, load_config
from infleet.operator.reconcile import reconcile
from infleet.operator.render import RenderOptions
from tests.conftest import REPO
from tests.operator.plane import running_plane

pytestmark = pytest.mark.e2e
GVP = ("infleet.io", "v1alpha1", "default", "inferenceservices")


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with running_plane(tmp_path_factory.mktemp("plane")) as kubeconfig:
        yield kubeconfig, load_config(str(kubeconfig))


def create(api_client, name, **spec_patch):
    from kubernetes import client

    obj = yaml.safe_load((REPO / "examples" / "chat-local.yaml").read_text())
    obj["metadata"]["name"] = name
    obj["spec"].update(spec_patch)
    return client.CustomObjectsApi(api_client).create_namespaced_custom_object(*GVP, obj)


def test_api_server_rejects_a_cel_rule_with_its_message(api):
    from kubernetes import client

    with pytest.raises(client.ApiException) as err:
        create(api[1], "bad", scaling={"minReplicas": 5, "maxReplicas": 2})
    assert err.value.status == 422
    assert json.loads(err.value.body)["message"] == (
        'InferenceService.infleet.io "bad" is invalid: spec.scaling: Invalid value: "object": '
        "scaling.minReplicas must be less than or equal to scaling.maxReplicas"
    )


def test_reconcile_applies_owned_children_and_puts_hand_edits_back(api):
    from kubernetes import client

    kube = Kube(api[1])
    body = create(api[1], "one")
    outcome = reconcile(body, kube, RenderOptions())
    assert outcome.result == "applied"
    assert [e[1] for e in outcome.events] == ["ScaledPool", "ScaledPool"]
    deployment = kube.get_deployment("default", "one-dedicated")
    assert deployment["metadata"]["ownerReferences"][0]["uid"] == body["metadata"]["uid"]
    assert {m["manager"] for m in deployment["metadata"]["managedFields"]} == {"infleet-operator"}
    live = kube.get_inference_service("default", "one")
    assert live["spec"] == body["spec"]  # never writes spec
    assert live["status"]["pools"]["spot"]["desired"] == 1
    assert [c["type"] for c in live["status"]["conditions"]] == ["Ready", "Progressing", "Degraded"]

    client.AppsV1Api(api[1]).patch_namespaced_deployment(
        "one-dedicated", "default", {"spec": {"replicas": 9}}
    )
    again = reconcile(live, kube, RenderOptions())
    assert kube.get_deployment("default", "one-dedicated")["spec"]["replicas"] == 1
    assert again.events == []  # nothing new to report


def test_invalid_spec_degrades_and_touches_no_child(api):
    from kubernetes import client

    kube = Kube(api[1])
    reconcile(create(api[1], "two"), kube, RenderOptions())
    before = kube.get_deployment("default", "two-dedicated")
    custom = client.CustomObjectsApi(api[1])
    custom.patch_namespaced_custom_object(*GVP, "two", {"spec": {"engine": {"kind": "vllm"}}})
    outcome = reconcile(custom.get_namespaced_custom_object(*GVP, "two"), kube, RenderOptions())
    assert outcome.result == "invalid"
    assert outcome.events == [
        (
            "Warning",
            "InvalidSpec",
            "spec.model.uri: builtin models run on engine kind infleet, not vllm",
        )
    ]
    after = kube.get_deployment("default", "two-dedicated")
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    status = custom.get_namespaced_custom_object(*GVP, "two")["status"]
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "InvalidSpec")
    assert status["observedGeneration"] == 2


def test_stale_reconcile_rereads_instead_of_overwriting(api):
    kube = Kube(api[1])
    body = create(api[1], "three")
    first = reconcile(body, kube, RenderOptions())
    stale = reconcile(body, kube, RenderOptions())  # same old resourceVersion
    assert first.events and stale.events == []
    assert kube.get_inference_service("default", "three")["status"] == first.status


@pytest.mark.slow
def test_operator_process_follows_the_cluster(api, tmp_path):
    """`infleet operator` against the kubeconfig: creates, repairs, reports, counts."""
    from kubernetes import client

    kubeconfig, api_client = api
    with socket.socket() as sock:  # a free port for /metrics
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = (tmp_path / "operator.log").open("w")
    # Only --kubeconfig names the cluster: no $KUBECONFIG, no ~/.kube/config (kopf's own
    # login would fall back to those, so this fails unless our login handler is used).
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env["HOME"] = str(tmp_path / "home")
    proc = subprocess.Popen(
        [sys.executable, "-m", "infleet", "operator", "--kubeconfig", str(kubeconfig),
         "--standalone", "--metrics-port", str(port), "--liveness-port", "0"],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    apps = client.AppsV1Api(api_client)
    custom = client.CustomObjectsApi(api_client)

    def wait_for(check, timeout=20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if value := check():
                    return value
            except client.ApiException:
                pass
            time.sleep(0.2)
        raise AssertionError((tmp_path / "operator.log").read_text()[-3000:])

    try:
        create(api_client, "live")
        status = wait_for(lambda: custom.get_namespaced_custom_object(*GVP, "live").get("status"))
        assert status["url"] == "http://live.default.svc.cluster.local:8000/v1"
        apps.delete_namespaced_deployment("live-spot", "default")
        wait_for(lambda: apps.read_namespaced_deployment("live-spot", "default"))
        apps.patch_namespaced_deployment("live-dedicated", "default", {"spec": {"replicas": 5}})
        wait_for(
            lambda: apps.read_namespaced_deployment("live-dedicated", "default").spec.replicas == 1
        )
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
        assert 'infleet_operator_reconciles_total{result="applied"}' in metrics
        assert "infleet_operator_reconcile_duration_seconds_count" in metrics
        # The autoscale timer sees the service's pods through the operator's pod watch.
        core = client.CoreV1Api(api_client)
        labels = {
            "app.kubernetes.io/managed-by": "infleet",
            "infleet.io/inferenceservice": "live",
            "infleet.io/pool": "dedicated",
        }
        pod = {
            "metadata": {"name": "live-dedicated-a", "labels": labels},
            "spec": {"nodeName": "node-1", "containers": [{"name": "engine", "image": "x"}]},
        }
        core.create_namespaced_pod("default", pod)
        ready = {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
        core.patch_namespaced_pod_status(
            "live-dedicated-a", "default", {"status": {"phase": "Running", "conditions": [ready]}}
        )
        series = (
            'infleet_autoscaler_ready_replicas{inferenceservice="live",'
            'namespace="default",pool="dedicated"}'
        )

        def ready_replicas() -> str | None:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
            line = next((x for x in text.splitlines() if x.startswith(series)), None)
            return line and line.rsplit(" ", 1)[1]

        assert wait_for(lambda: ready_replicas() == "1.0", timeout=40)
        core.delete_namespaced_pod("live-dedicated-a", "default", grace_period_seconds=0)
        assert wait_for(lambda: ready_replicas() == "0.0", timeout=40)
    finally:
        proc.terminate()
        proc.wait(20)
