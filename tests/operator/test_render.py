"""Rendering: every engine kind and capacity mix, validated against the Kubernetes schemas."""

import itertools

import kubernetes_validate
import pytest
from kubernetes_validate.utils import all_versions

from infleet.operator.kube_versions import OLDEST, PRESTOP_SLEEP
from infleet.operator.render import RenderOptions, render_children
from tests.operator.samples import MIXES, engine_isvc

KINDS = ["infleet", "vllm", "sglang", "tgi"]
COMBOS = list(itertools.product(KINDS, MIXES))
# Every minor from the oldest the operator supports to the newest kubernetes-validate knows.
MINORS = sorted({(1, int(v.split(".")[1])) for v in all_versions() if v.startswith("1.")})
SUPPORTED = [m for m in MINORS if m >= OLDEST]


def by_kind(children):
    out = {}
    for child in children:
        out.setdefault(child["kind"], []).append(child)
    return out


@pytest.mark.parametrize("minor", SUPPORTED, ids=lambda m: f"1.{m[1]}")
def test_every_child_validates_against_each_supported_minors_strict_schemas(minor):
    """Strict: an unknown field (one a minor does not have yet) fails, unlike the
    non-strict schemas, which accept unknown fields. Every engine kind, both pools."""
    assert len(SUPPORTED) >= 10 and SUPPORTED[0] == OLDEST
    for kind in KINDS:
        options = RenderOptions(kube_version=minor)
        for child in render_children(engine_isvc(kind, "mixed"), options):
            kubernetes_validate.validate(child, f"1.{minor[1]}.0", strict=True)


@pytest.mark.parametrize(("kind", "mix"), COMBOS)
def test_every_capacity_mix_validates_against_the_newest_strict_schemas(kind, mix):
    for child in render_children(engine_isvc(kind, mix)):
        kubernetes_validate.validate(child, f"1.{SUPPORTED[-1][1]}.0", strict=True)


def test_the_strict_schemas_catch_a_field_the_minor_lacks():
    # What the gate prevents: preStop.sleep rendered for a server that has no such field.
    newest = render_children(engine_isvc("vllm", "mixed"))
    with pytest.raises(kubernetes_validate.ValidationError, match="'sleep' was unexpected"):
        kubernetes_validate.validate(by_kind(newest)["Deployment"][0], "1.28.0", strict=True)


@pytest.mark.parametrize(
    ("minor", "pre_stop"),
    [
        ((1, 29), {"exec": {"command": ["sleep", "45"]}}),
        (PRESTOP_SLEEP, {"sleep": {"seconds": 45}}),
        (None, {"sleep": {"seconds": 45}}),
    ],
)
def test_pre_stop_sleep_is_gated_on_the_server_version(minor, pre_stop):
    isvc = engine_isvc("vllm", "mixed", engine={"shutdownGraceSeconds": 40})
    deployment = by_kind(render_children(isvc, RenderOptions(kube_version=minor)))["Deployment"][0]
    assert engine_container(deployment)["lifecycle"]["preStop"] == pre_stop


@pytest.mark.parametrize(("kind", "mix"), COMBOS)
def test_children_in_apply_order_with_a_deployment_per_pool_in_the_spec(kind, mix):
    children = render_children(engine_isvc(kind, mix))
    pools = ["Deployment", "Deployment"] if mix != "dedicated-only" else ["Deployment"]
    assert [c["kind"] for c in children] == [
        "ConfigMap", "NetworkPolicy", *pools, "Service", "PodDisruptionBudget",
    ]  # fmt: skip


@pytest.mark.parametrize(("kind", "mix"), COMBOS)
def test_names_labels_and_owner_per_contract(kind, mix):
    children = by_kind(render_children(engine_isvc(kind, mix)))
    assert children["ConfigMap"][0]["metadata"]["name"] == "chat-engine"
    assert [d["metadata"]["name"] for d in children["Deployment"]] == (
        ["chat-dedicated"] if mix == "dedicated-only" else ["chat-dedicated", "chat-spot"]
    )
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
            "uid": "uid-1", "controller": True,
        }  # fmt: skip
    for deployment, pool in zip(children["Deployment"], ["dedicated", "spot"], strict=False):
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
    replicas = {
        d["metadata"]["labels"]["infleet.io/pool"]: d["spec"]["replicas"] for d in deployments
    }
    assert replicas.get("dedicated") == dedicated and replicas.get("spot", 0) == spot


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
