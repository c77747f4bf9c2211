"""Reconcile and the operator process against an emulated API server (real HTTP, SSA, CEL).

The reconcile runs here from a snapshot read from the API server (what the operator's
caches would hold); the operator process checks its watches, Events and metrics.
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

from infleet.operator.cache import Snapshot
from infleet.operator.kube import Kube, load_config
from infleet.operator.own_writes import OwnWrites
from infleet.operator.reconcile import reconcile
from infleet.operator.render import RenderOptions
from tests.conftest import REPO
from tests.operator.plane import running_plane, snapshot

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
    # The engines' children are what these tests look at (test_router_render.py: the router).
    obj["spec"].update({"router": {"enabled": False}} | spec_patch)
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


def run(api_client, name: str):
    """One reconcile of `name` from what the API server holds now."""
    return reconcile(snapshot(api_client, "default", name), Kube(api_client), RenderOptions())


def versions(api_client, name: str) -> dict[tuple[str, str], str]:
    snap = snapshot(api_client, "default", name)
    return {
        (c["kind"], c["metadata"]["name"]): c["metadata"]["resourceVersion"] for c in snap.children
    }


def test_reconcile_applies_owned_children_and_puts_hand_edits_back(api):
    from kubernetes import client

    kube = Kube(api[1])
    body = create(api[1], "one")
    outcome = run(api[1], "one")
    assert outcome.result == "applied"
    assert [e[1] for e in outcome.events] == ["ScaledPool", "ScaledPool"]
    deployment = snapshot(api[1], "default", "one").children
    deployment = next(c for c in deployment if c["metadata"]["name"] == "one-dedicated")
    assert deployment["metadata"]["ownerReferences"][0]["uid"] == body["metadata"]["uid"]
    assert "finalizers" not in kube.get_inference_service("default", "one")["metadata"]
    live = kube.get_inference_service("default", "one")
    assert live["spec"] == body["spec"]  # never writes spec
    assert live["status"]["pools"]["spot"]["desired"] == 1
    assert [c["type"] for c in live["status"]["conditions"]] == ["Ready", "Progressing", "Degraded"]

    settled = versions(api[1], "one")
    assert run(api[1], "one").events == []
    assert versions(api[1], "one") == settled  # nothing changed: nothing applied

    client.AppsV1Api(api[1]).patch_namespaced_deployment(
        "one-dedicated", "default", {"spec": {"replicas": 9}}
    )
    again = run(api[1], "one")
    dedicated = client.AppsV1Api(api[1]).read_namespaced_deployment("one-dedicated", "default")
    assert dedicated.spec.replicas == 1
    assert again.events == []  # nothing new to report


def test_a_child_deleted_before_the_watch_showed_it_is_made_again(api):
    """The operator applies the children; the spot Deployment is deleted before the cache
    ever shows it, so its own write stands in for it (the cache may only lag). The watch's
    DELETED event ends that: the next reconcile makes the Deployment again."""
    from kubernetes import client, watch

    apps = client.AppsV1Api(api[1])
    create(api[1], "lag")
    key = ("default", "lag")
    own = OwnWrites()
    own.applied(key, run(api[1], "lag").applied)
    since = apps.list_namespaced_deployment("default").metadata.resource_version
    apps.delete_namespaced_deployment("lag-spot", "default")

    def from_cache() -> Snapshot:  # the cache: every child but the one deleted
        snap = snapshot(api[1], "default", "lag")
        return Snapshot(snap.parent, own.children(key, snap.children), [])

    assert reconcile(from_cache(), Kube(api[1]), RenderOptions()).applied == []  # it stands in
    stream = watch.Watch().stream(
        apps.list_namespaced_deployment, "default", resource_version=since, timeout_seconds=10
    )
    gone = next(
        e["raw_object"]["metadata"]
        for e in stream
        if e["type"] == "DELETED" and e["raw_object"]["metadata"]["name"] == "lag-spot"
    )
    own.deleted(key, "Deployment", gone)
    applied = reconcile(from_cache(), Kube(api[1]), RenderOptions()).applied
    assert [(c["kind"], c["metadata"]["name"]) for c in applied] == [("Deployment", "lag-spot")]
    assert apps.read_namespaced_deployment("lag-spot", "default").metadata.uid != gone["uid"]


def test_invalid_spec_degrades_and_touches_no_child(api):
    from kubernetes import client

    create(api[1], "two")
    run(api[1], "two")
    before = versions(api[1], "two")
    custom = client.CustomObjectsApi(api[1])
    custom.patch_namespaced_custom_object(*GVP, "two", {"spec": {"engine": {"kind": "vllm"}}})
    outcome = run(api[1], "two")
    assert outcome.result == "invalid"
    message = "spec.model.uri: builtin models run on engine kind infleet, not vllm"
    assert outcome.events == [("Warning", "InvalidSpec", message)]
    assert versions(api[1], "two") == before
    status = custom.get_namespaced_custom_object(*GVP, "two")["status"]
    conditions = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
    assert conditions["Degraded"] == ("True", "InvalidSpec")
    assert conditions["Ready"] == ("False", "InvalidSpec")  # cannot roll out: not Ready
    assert status["observedGeneration"] == 2


def test_a_tenant_outside_the_platform_policy_is_degraded_and_gets_no_child(api):
    """The chat example asks for GKE spot; this namespace's rule grants no spot toleration."""
    from kubernetes import client

    from infleet.operator.policy import PlatformPolicy

    platform = PlatformPolicy.model_validate(
        {
            "nodePools": [{"name": "l4", "nodeSelector": {"pool": "l4"}}],
            "tenants": [
                {
                    "name": "tenants",
                    "namespaces": ["default"],
                    "nodePools": ["l4"],
                    "tolerations": [],
                }
            ],
        }
    )
    create(api[1], "tenant")
    options = RenderOptions(platform=platform)
    outcome = reconcile(snapshot(api[1], "default", "tenant"), Kube(api[1]), options)
    assert outcome.result == "invalid" and outcome.applied == []
    assert snapshot(api[1], "default", "tenant").children == []  # nothing was created
    status = client.CustomObjectsApi(api[1]).get_namespaced_custom_object(*GVP, "tenant")["status"]
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "PolicyViolation")
    assert degraded["message"].startswith(
        "spec.capacity.spot.preset: the spot pool's toleration {key=cloud.google.com/gke-spot"
    )
    assert "not allowed in namespace default (platform rule tenants)" in degraded["message"]
    assert outcome.events == [("Warning", "PolicyViolation", degraded["message"])]


def test_stale_reconcile_rereads_instead_of_overwriting(api):
    kube = Kube(api[1])
    create(api[1], "three")
    stale = snapshot(api[1], "default", "three")
    first = reconcile(stale, kube, RenderOptions())
    again = reconcile(stale, kube, RenderOptions())  # the same old resourceVersion
    assert first.events and again.events == []
    assert kube.get_inference_service("default", "three")["status"] == first.status


def test_a_pool_removed_from_the_spec_has_its_deployment_deleted_and_nothing_else(api):
    from kubernetes import client

    apps = client.AppsV1Api(api[1])
    # One replica, all on dedicated: dropping the spot pool changes no other child.
    create(api[1], "four", scaling={"minReplicas": 1, "maxReplicas": 4})
    run(api[1], "four")
    labels = {"app.kubernetes.io/managed-by": "infleet", "infleet.io/inferenceservice": "four"}
    foreign = {  # labelled like a child, owned by no one: not the operator's to delete
        "metadata": {"name": "four-canary", "labels": labels},
        "spec": {
            "selector": {"matchLabels": {"app": "canary"}},
            "template": {"metadata": {"labels": {"app": "canary"}},
                         "spec": {"containers": [{"name": "c", "image": "x"}]}},
        },
    }  # fmt: skip
    apps.create_namespaced_deployment("default", foreign)
    before = versions(api[1], "four")
    assert ("Deployment", "four-spot") in before
    custom = client.CustomObjectsApi(api[1])
    custom.patch_namespaced_custom_object(
        *GVP, "four", {"spec": {"capacity": {"spot": {"enabled": False}}}}
    )
    outcome = run(api[1], "four")
    assert outcome.result == "applied"
    after = versions(api[1], "four")
    assert after == {k: v for k, v in before.items() if k != ("Deployment", "four-spot")}
    assert custom.get_namespaced_custom_object(*GVP, "four")["status"]["pools"]["spot"] == {
        "desired": 0, "ready": 0,
    }  # fmt: skip


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
         "--metrics-port", str(port), "--liveness-port", "0"],
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


def test_every_example_is_accepted_by_the_crd_with_strict_field_validation(api):
    """The examples (spec.template, model credentials and cache included) pass the CRD's
    structural schema and CEL rules, with unknown fields an error rather than dropped."""
    from kubernetes import client

    custom = client.CustomObjectsApi(api[1])
    for path in sorted((REPO / "examples").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        doc["metadata"] = {"name": f"example-{path.stem}", "namespace": "default"}
        created = custom.create_namespaced_custom_object(*GVP, doc, field_validation="Strict")
        assert created["spec"]["model"] == {**doc["spec"]["model"]}, path.name
        assert (
            created["spec"].get("template", {}).get("spec", {})
            == doc["spec"].get("template", {}).get("spec", {})
            or "template" not in doc["spec"]
        ), path.name
