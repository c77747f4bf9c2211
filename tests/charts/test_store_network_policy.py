"""The chart's NetworkPolicy for the operator: the adapter store admits the engine pods of
InferenceServices only; /metrics and /healthz stay open. Judged by the independent
NetworkPolicy evaluator (tests/operator/network_policy_semantics.py) on `helm template`."""

from __future__ import annotations

from infleet.operator.names import pool_labels, router_labels
from tests.charts.helm import NAMESPACE, by_kind, one, render
from tests.operator.network_policy_semantics import Pod, allowed

PORTS = {"metrics": 8080, "healthz": 8081, "adapters": 8082}
ENGINE = Pod("team-a", pool_labels("chat", "dedicated"))
ROUTER = Pod("team-a", router_labels("chat"))
TENANT = Pod("team-b", {"app": "curious"})
PROMETHEUS = Pod("monitoring", {"app.kubernetes.io/name": "prometheus"})
UPLOAD = Pod("team-b", {"infleet.io/lora-upload": "bot", "job-name": "bot-lora-upload-1"})


def operator_pod(objects) -> Pod:
    template = one(objects, "Deployment")["spec"]["template"]
    return Pod(NAMESPACE, template["metadata"]["labels"], PORTS)


def test_the_store_admits_engine_pods_only_and_metrics_stay_open():
    objects = render()
    policies = by_kind(objects, "NetworkPolicy")
    operator = operator_pod(objects)
    assert allowed(policies, ENGINE, operator, PORTS["adapters"])
    assert allowed(policies, UPLOAD, operator, PORTS["adapters"])  # a pvc:// upload Job
    for stranger in (ROUTER, TENANT, PROMETHEUS):
        assert not allowed(policies, stranger, operator, PORTS["adapters"]), stranger
    for peer in (PROMETHEUS, TENANT):
        assert allowed(policies, peer, operator, PORTS["metrics"])
        assert allowed(policies, peer, operator, PORTS["healthz"])


def test_the_platform_narrows_the_namespaces_and_may_turn_it_off():
    selector = "networkPolicy.adapterStoreNamespaces.matchLabels.infleet\\.io/serves=true"
    objects = render("--set-string", selector)
    policies, operator = by_kind(objects, "NetworkPolicy"), operator_pod(objects)
    serving = Pod("team-a", ENGINE.labels, namespace_labels={"infleet.io/serves": "true"})
    assert allowed(policies, serving, operator, PORTS["adapters"])
    assert not allowed(policies, ENGINE, operator, PORTS["adapters"])  # its namespace unlabelled
    uploads = "networkPolicy.adapterUploadNamespaces.matchLabels.infleet\\.io/pvc=true"
    policies = by_kind(render("--set-string", uploads), "NetworkPolicy")
    assert not allowed(policies, UPLOAD, operator, PORTS["adapters"])  # namespace unlabelled
    labelled = Pod("team-b", UPLOAD.labels, namespace_labels={"infleet.io/pvc": "true"})
    assert allowed(policies, labelled, operator, PORTS["adapters"])
    assert by_kind(render("--set", "networkPolicy.enabled=false"), "NetworkPolicy") == []
