"""docs/operations.md says what the chart, the rules and the operator really do."""

import re
import shutil
import subprocess
from pathlib import Path

import yaml

from infleet.operator.names import FIELD_MANAGER
from tests.charts.helm import NAMESPACE, helm
from tests.charts.paths import CHART, OPERATIONS_DOC, RULES, tool
from tests.conftest import REPO

DOC = OPERATIONS_DOC.read_text()


def marked_block(marker: str) -> str:
    """The fenced block right after `<!-- test: marker -->`."""
    m = re.search(rf"<!-- test: {marker} -->\n```\w*\n(.*?)```", DOC, flags=re.DOTALL)
    assert m, f"docs/operations.md has no block marked {marker}"
    return m[1]


def test_plain_prometheus_config_is_valid_and_loads_the_rules(tmp_path: Path):
    config = yaml.safe_load(marked_block("prometheus-config"))
    for job in config["scrape_configs"]:
        # Debian's promtool is built without Kubernetes discovery: check the roles here and
        # let promtool check everything else (relabelling, rule files) on a static target.
        (sd,) = job.pop("kubernetes_sd_configs")
        assert sd["role"] in ("endpoints", "pod")
        job["static_configs"] = [{"targets": ["127.0.0.1:8080"]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    shutil.copy(RULES, tmp_path / "prometheus-rules.yaml")
    out = subprocess.run(
        [tool("promtool"), "check", "config", "prometheus.yml"],
        cwd=tmp_path, capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    count = sum(len(g["rules"]) for g in yaml.safe_load(RULES.read_text())["groups"])
    assert f"SUCCESS: {count} rules found" in out.stdout


def test_argocd_application_ignores_what_the_operator_and_scalers_own():
    app = yaml.safe_load(marked_block("argocd-application"))
    assert app["apiVersion"] == "argoproj.io/v1alpha1" and app["kind"] == "Application"
    ignored = app["spec"]["ignoreDifferences"]
    # The field manager the operator really applies the pool Deployments with.
    assert {
        "group": "apps",
        "kind": "Deployment",
        "managedFieldsManagers": [FIELD_MANAGER],
    } in ignored
    assert {"group": "apps", "kind": "Deployment", "jsonPointers": ["/spec/replicas"]} in ignored
    # The pointer the InferenceService's scale subresource writes (from the generated CRD).
    crd = yaml.safe_load((REPO / "crds" / "infleet.io_inferenceservices.yaml").read_text())
    path = crd["spec"]["versions"][0]["subresources"]["scale"]["specReplicasPath"]
    pointer = "/" + path.lstrip(".").replace(".", "/")
    assert {"group": "infleet.io", "kind": "InferenceService", "jsonPointers": [pointer]} in ignored
    assert "RespectIgnoreDifferences=true" in app["spec"]["syncPolicy"]["syncOptions"]


def test_alert_table_lists_exactly_the_alerts():
    groups = yaml.safe_load(RULES.read_text())["groups"]
    alerts = {r["alert"] for g in groups for r in g["rules"] if "alert" in r}
    table = set(re.findall(r"^\| `(Infleet\w+)` \|", DOC, flags=re.MULTILINE))
    assert table == alerts


def test_every_top_level_value_is_documented():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    missing = [key for key in values if f"`{key}" not in DOC]
    assert missing == []


def test_object_names_in_the_commands_match_the_documented_release_name():
    out = helm("template", "infleet-operator", str(CHART), "-n", NAMESPACE)
    assert out.returncode == 0, out.stderr
    names = {(o["kind"], o["metadata"]["name"]) for o in yaml.safe_load_all(out.stdout) if o}
    assert ("Deployment", "infleet-operator") in names
    assert ("ConfigMap", "infleet-operator-argocd-health") in names
    assert "deployment/infleet-operator" in DOC and "infleet-operator-argocd-health" in DOC


def test_the_documented_platform_policy_installs_and_the_operator_accepts_it(tmp_path: Path):
    from infleet.operator.policy import load_policy

    values = tmp_path / "values.yaml"
    values.write_text(marked_block("platform-policy"))
    out = helm("template", "infleet-operator", str(CHART), "-n", NAMESPACE, "-f", str(values))
    assert out.returncode == 0, out.stderr
    config = next(
        d
        for d in yaml.safe_load_all(out.stdout)
        if d and d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("platform-policy")
    )
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(config["data"]["policy.yaml"])
    policy = load_policy(policy_file)
    assert [r.name for r in policy.tenants] == ["research", "product-teams"]
    assert policy.rule_for("team-a", {}).max_gpus == 8
    # The chart names this release's operator pods as the engines' operator peer.
    (peer,) = policy.network.operator
    assert peer["podSelector"]["matchLabels"]["app.kubernetes.io/instance"] == "infleet-operator"
    assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": NAMESPACE}
