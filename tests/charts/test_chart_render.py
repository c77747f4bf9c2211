"""The chart lints and renders for every value set, into valid, locked-down Kubernetes objects."""

import pytest
import yaml

from infleet import __version__
from infleet.operator.kube_versions import OLDEST
from infleet.operator.run import parser
from tests.charts.helm import (
    MONITORING,
    NAMESPACE,
    NAMESPACED,
    VARIANTS,
    by_kind,
    helm,
    one,
    render,
)
from tests.charts.k8s_schema import validate
from tests.charts.paths import CHART, HEALTH_LUA, RULES

CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}
PROMETHEUS_OPERATOR = {"ServiceMonitor", "PrometheusRule"}


@pytest.mark.parametrize("variant", VARIANTS)
def test_helm_lint_strict_passes(variant: str):
    value_args = [a for a in VARIANTS[variant] if a not in MONITORING]  # lint takes values only
    out = helm("lint", "--strict", str(CHART), *value_args)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_object_is_valid_for_its_kubernetes_api(variant: str):
    objects = render(*VARIANTS[variant])
    assert objects
    for obj in objects:
        meta = obj["metadata"]
        if obj["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in meta, f"{obj['kind']} is cluster-scoped"
        elif obj["kind"] not in ("Role", "RoleBinding"):
            assert meta["namespace"] == NAMESPACE, f"{obj['kind']}/{meta['name']}"
        if obj["kind"] in PROMETHEUS_OPERATOR:
            assert obj["apiVersion"] == "monitoring.coreos.com/v1"
            assert set(obj) == {"apiVersion", "kind", "metadata", "spec"}
        else:
            assert validate(obj) == [], "\n".join(validate(obj))


@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        ("default", set()),  # the cluster serves no monitoring.coreos.com/v1
        ("cluster+monitoring", PROMETHEUS_OPERATOR),
        ("namespaced+monitoring", PROMETHEUS_OPERATOR),
        ("monitoring-disabled", set()),
    ],
)
def test_monitoring_objects_need_the_api_and_the_values(variant: str, expected: set[str]):
    assert {o["kind"] for o in render(*VARIANTS[variant])} & PROMETHEUS_OPERATOR == expected


def test_prometheus_rule_embeds_the_plain_rules_file():
    rule = one(render(*MONITORING), "PrometheusRule")
    assert rule["spec"] == yaml.safe_load(RULES.read_text())


def test_prometheus_rule_points_runbooks_where_values_say():
    base = "https://wiki.example.com/sre/infleet"
    rule = one(
        render(*MONITORING, "--set", f"prometheusRule.runbookBaseURL={base}"), "PrometheusRule"
    )
    urls = [
        r["annotations"]["runbook_url"]
        for g in rule["spec"]["groups"]
        for r in g["rules"]
        if "alert" in r
    ]
    assert urls and all(u.startswith(base + "#") for u in urls)


def test_service_monitor_scrapes_the_metrics_service_keeping_service_namespaces():
    objects = render(*MONITORING, "--set", "serviceMonitor.labels.release=kube-prometheus-stack")
    monitor, service = one(objects, "ServiceMonitor"), one(objects, "Service")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"] == "metrics"
    # The autoscaler's `namespace` label is the InferenceService's; the target's must not win.
    assert endpoint["honorLabels"] is True
    # InfleetOperatorDown looks for up{job="infleet-operator"}.
    assert {
        "action": "replace",
        "targetLabel": "job",
        "replacement": "infleet-operator",
    } in endpoint["relabelings"]


def test_operator_deployment_is_locked_down_and_probed():
    objects = render()
    deployment, account = one(objects, "Deployment"), one(objects, "ServiceAccount")
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert container["image"] == f"ghcr.io/infleet/infleet-operator:{__version__}"
    assert container["command"] == ["infleet"] and container["args"][0] == "operator"
    assert container["ports"] == [
        {"name": "metrics", "containerPort": 8080, "protocol": "TCP"},
        {"name": "healthz", "containerPort": 8081, "protocol": "TCP"},
        {"name": "adapters", "containerPort": 8082, "protocol": "TCP"},
    ]
    # `infleet operator` serves kopf's /healthz on --liveness-port, /metrics on --metrics-port.
    args = parser().parse_args(container["args"][1:])  # every flag is one the operator takes
    assert (args.metrics_port, args.liveness_port, args.api_timeout) == (8080, 8081, 10)
    # The adapter store on a writable volume of its own, advertised at the pod's IP.
    assert (str(args.adapter_store), args.adapter_store_port) == ("/var/lib/infleet/adapters", 8082)
    assert {"name": "adapters", "mountPath": "/var/lib/infleet/adapters"} in container[
        "volumeMounts"
    ]
    assert any(e["name"] == "POD_IP" for e in container["env"])
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]


def test_two_replicas_elect_a_leader_roll_one_at_a_time_and_survive_a_drain():
    objects = render()
    deployment, pdb = one(objects, "Deployment"), one(objects, "PodDisruptionBudget")
    spec, pod = deployment["spec"], deployment["spec"]["template"]["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }  # fmt: skip
    assert pdb["spec"] == {"minAvailable": 1, "selector": spec["selector"]}
    (container,) = pod["containers"]
    args = parser().parse_args(container["args"][1:])
    assert args.lease_name == deployment["metadata"]["name"]
    assert (args.lease_duration, args.renew_deadline, args.retry_period) == (15, 10, 2)
    env = {
        e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        for e in container["env"]
    }
    assert env["POD_NAME"] == "metadata.name" and env["POD_NAMESPACE"] == "metadata.namespace"
    anti = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert (
        anti[0]["podAffinityTerm"]["labelSelector"]["matchLabels"]
        == spec["selector"]["matchLabels"]
    )
    single = render("--set", "replicaCount=1")
    assert by_kind(single, "PodDisruptionBudget") == []  # it would block every drain


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (("leaderElection.leaseDuration=10",), "leaderElection.leaseDuration (10) must be longer than leaderElection.renewDeadline (10)"),
        (("leaderElection.retryPeriod=9",), "leaderElection.renewDeadline (10) must be longer than 1.2 x leaderElection.retryPeriod (9)"),
    ],
)  # fmt: skip
def test_lease_timings_that_could_elect_two_leaders_are_refused(values, message):
    out = helm("template", "x", str(CHART), *[a for v in values for a in ("--set", v)])
    assert out.returncode != 0 and message in out.stderr


def test_equal_metrics_and_liveness_ports_are_refused():
    out = helm("template", "x", str(CHART), "--set", "operator.metricsPort=8081")
    assert out.returncode != 0
    assert (
        "operator.metricsPort and operator.livenessPort must differ (both are 8081): the "
        "operator serves /metrics and /healthz on separate ports"
    ) in out.stderr


def test_image_tag_and_metrics_port_follow_values():
    objects = render("--set", "image.tag=1.2.3", "--set", "operator.metricsPort=9090")
    (container,) = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert container["image"].endswith(":1.2.3")
    assert "--metrics-port=9090" in container["args"]
    assert container["ports"][0]["containerPort"] == 9090


def test_cluster_mode_watches_every_namespace_with_one_cluster_role():
    objects = render()
    (container,) = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert "--all-namespaces" in container["args"]
    assert not [a for a in container["args"] if a.startswith("--namespace")]
    for kind in ("Role", "RoleBinding"):  # the leader Lease's, in its own namespace only
        assert [o["metadata"]["namespace"] for o in by_kind(objects, kind)] == [NAMESPACE]
    binding = one(objects, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == one(objects, "ClusterRole")["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "infleet-infleet-operator", "namespace": NAMESPACE}
    ]


def test_namespaced_mode_watches_and_grants_exactly_the_listed_namespaces():
    objects = render(*NAMESPACED)
    (container,) = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert [a for a in container["args"] if a.startswith("--namespace")] == [
        "--namespace=team-a",
        "--namespace=team-b",
    ]
    assert "--all-namespaces" not in container["args"]
    for kind in ("Role", "RoleBinding"):
        assert sorted(o["metadata"]["namespace"] for o in by_kind(objects, kind)) == [
            NAMESPACE,  # the leader Lease's
            "team-a",
            "team-b",
        ]


def test_rbac_create_false_renders_no_rbac_but_still_runs_the_operator():
    objects = render("--set", "rbac.create=false")
    assert not {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"} & {
        o["kind"] for o in objects
    }
    assert one(objects, "Deployment")


def test_argocd_health_configmap_ships_the_tested_lua_script_verbatim():
    config = next(o for o in render() if o["metadata"]["name"].endswith("-argocd-health"))
    assert config["data"] == {
        "resource.customizations.health.infleet.io_InferenceService": HEALTH_LUA.read_text(),
        "resource.customizations.health.infleet.io_LoRAAdapter": HEALTH_LUA.with_name(
            "argocd-health-lora.lua"
        ).read_text(),
    }


def test_chart_app_version_is_the_package_version():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == __version__


def test_kube_version_admits_what_the_operator_renders_for():
    """Chart.yaml's kubeVersion and operator/kube_versions.py's OLDEST are one fact."""
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    major, minor = OLDEST
    assert chart["kubeVersion"] == f">={major}.{minor}.0-0"
    assert helm("template", "x", str(CHART), "--kube-version", f"{major}.{minor}.0").returncode == 0
    older = helm("template", "x", str(CHART), "--kube-version", f"{major}.{minor - 1}.0")
    assert older.returncode != 0 and "incompatible with Kubernetes" in older.stderr
