"""Rendering: every engine kind and capacity mix, validated against the Kubernetes schemas."""

import itertools

import kubernetes_validate
import pytest

from infleet.operator.render import RenderOptions, render_children
from tests.operator.samples import MIXES, engine_isvc

KINDS = ["infleet", "vllm", "sglang", "tgi"]
COMBOS = list(itertools.product(KINDS, MIXES))


def by_kind(children):
    out = {}
    for child in children:
        out.setdefault(child["kind"], []).append(child)
    return out


@pytest.mark.parametrize(("kind", "mix"), COMBOS)
def test_every_child_validates_against_kubernetes_schemas(kind, mix):
    children = render_children(engine_isvc(kind, mix))
    assert [c["kind"] for c in children] == [
        "ConfigMap", "Deployment", "Deployment", "Service", "PodDisruptionBudget",
    ]  # fmt: skip
    for child in children:
        kubernetes_validate.validate(child, "1.32", strict=True)


@pytest.mark.parametrize(("kind", "mix"), COMBOS)
def test_names_labels_and_owner_per_contract(kind, mix):
    children = by_kind(render_children(engine_isvc(kind, mix)))
    assert children["ConfigMap"][0]["metadata"]["name"] == "chat-engine"
    assert [d["metadata"]["name"] for d in children["Deployment"]] == [
        "chat-dedicated",
        "chat-spot",
    ]
    assert children["Service"][0]["metadata"]["name"] == "chat"
    assert children["PodDisruptionBudget"][0]["metadata"]["name"] == "chat"
    for child in [c for group in children.values() for c in group]:
        labels = child["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "infleet"
        assert labels["infleet.io/inferenceservice"] == "chat"
        assert child["metadata"]["namespace"] == "team-a"
        (owner,) = child["metadata"]["ownerReferences"]
        assert owner == {
            "apiVersion": "infleet.io/v1alpha1", "kind": "InferenceService", "name": "chat",
            "uid": "uid-1", "controller": True, "blockOwnerDeletion": True,
        }  # fmt: skip
    for deployment, pool in zip(children["Deployment"], ["dedicated", "spot"], strict=True):
        assert deployment["metadata"]["labels"]["infleet.io/pool"] == pool
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert pod_labels["infleet.io/pool"] == pool
        assert deployment["spec"]["selector"]["matchLabels"] == pod_labels
    assert children["Service"][0]["spec"]["selector"] == {
        "app.kubernetes.io/managed-by": "infleet", "infleet.io/inferenceservice": "chat",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("mix", "dedicated", "spot"), [("dedicated-only", 2, 0), ("spot-only", 0, 3), ("mixed", 1, 2)]
)
def test_min_replicas_split_as_capacity_says(mix, dedicated, spot):
    deployments = by_kind(render_children(engine_isvc("infleet", mix)))["Deployment"]
    assert [d["spec"]["replicas"] for d in deployments] == [dedicated, spot]


def engine_container(deployment):
    return deployment["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize("kind", KINDS)
def test_engine_gets_pod_ip_host_port_and_probes(kind):
    deployment = by_kind(render_children(engine_isvc(kind, "mixed")))["Deployment"][0]
    container = engine_container(deployment)
    assert container["env"][0] == {
        "name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}},
    }  # fmt: skip
    host_flag = "--hostname" if kind == "tgi" else "--host"
    assert f"{host_flag}=$(POD_IP)" in container["args"]
    assert container["ports"][0]["name"] == "http"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}


def test_infleet_engine_reads_its_config_file():
    children = by_kind(
        render_children(engine_isvc("infleet", "mixed", engine={"kvCache": {"dtype": "fp8"}}))
    )
    container = engine_container(children["Deployment"][0])
    assert container["command"] == ["infleet", "serve"]
    assert container["args"] == ["--config=/etc/infleet/engine.yaml", "--host=$(POD_IP)"]
    assert {"name": "engine-config", "mountPath": "/etc/infleet"} in container["volumeMounts"]
    import yaml

    config = yaml.safe_load(children["ConfigMap"][0]["data"]["engine.yaml"])
    assert config == {
        "model": "builtin:smollm2-135m-instruct",
        "served-model-name": "smollm2-135m-instruct",
        "port": 8000,
        "device": "auto",
        "kv-cache-dtype": "fp8",
        "shutdown-grace-seconds": 30,
    }


def test_config_change_rolls_the_pods():
    def config_hash(**extra):
        deployment = by_kind(render_children(engine_isvc("infleet", "mixed", **extra)))[
            "Deployment"
        ][0]
        return deployment["spec"]["template"]["metadata"]["annotations"]["infleet.io/config-hash"]

    assert config_hash() == config_hash()
    assert config_hash() != config_hash(engine={"shutdownGraceSeconds": 60})


def test_monitoring_children_only_with_the_prometheus_operator():
    isvc = engine_isvc("vllm", "mixed")
    assert "ServiceMonitor" not in by_kind(render_children(isvc))
    children = by_kind(render_children(isvc, RenderOptions(prometheus_operator=True)))
    monitor = children["ServiceMonitor"][0]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")
    assert endpoint["relabelings"] == [
        {
            "sourceLabels": ["__meta_kubernetes_pod_label_infleet_io_inferenceservice"],
            "targetLabel": "inferenceservice",
        },
        {"sourceLabels": ["__meta_kubernetes_pod_label_infleet_io_pool"], "targetLabel": "pool"},
    ]
    assert children["PrometheusRule"][0]["spec"]["groups"][0]["rules"]


@pytest.mark.parametrize("kind", KINDS)
def test_graceful_shutdown_covers_the_engine_grace(kind):
    children = by_kind(
        render_children(engine_isvc(kind, "mixed", engine={"shutdownGraceSeconds": 40}))
    )
    deployment = children["Deployment"][0]
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    pre_stop = engine_container(deployment)["lifecycle"]["preStop"]["sleep"]["seconds"]
    if kind == "infleet":
        # Drains itself: SIGTERM right after the endpoints drop, then 40 s to finish.
        assert pre_stop == 5
        assert "shutdown-grace-seconds: 40" in children["ConfigMap"][0]["data"]["engine.yaml"]
        assert grace >= pre_stop + 40
    else:
        # Keeps serving in-flight requests through a longer preStop, then SIGTERM.
        assert pre_stop == 5 + 40
        assert grace > pre_stop
    assert grace == 5 + 40 + 10


def test_rollout_never_drops_below_current_capacity():
    deployment = by_kind(render_children(engine_isvc("vllm", "mixed")))["Deployment"][0]
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert {s["topologyKey"] for s in spread} == {
        "topology.kubernetes.io/zone",
        "kubernetes.io/hostname",
    }
    assert all(s["labelSelector"]["matchLabels"]["infleet.io/pool"] == "dedicated" for s in spread)


def test_pdb_and_service():
    children = by_kind(render_children(engine_isvc("sglang", "mixed")))
    pdb = children["PodDisruptionBudget"][0]["spec"]
    assert pdb["maxUnavailable"] == 1 and pdb["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    (port,) = children["Service"][0]["spec"]["ports"]
    assert port == {"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}
    container = engine_container(children["Deployment"][0])
    assert container["ports"][0]["containerPort"] == 30000  # SGLang's own port behind it
