"""`infleet render -f FILE`: multi-document YAML in and out, clear errors with exit code 1."""

import io
import subprocess
import sys

import kubernetes_validate
import yaml

from infleet.operator.cli import render_main
from tests.conftest import REPO


def render(*args, stdin=None):
    return subprocess.run(
        [sys.executable, "-m", "infleet", "render", *args],
        capture_output=True,
        text=True,
        input=stdin,
        cwd=REPO,
    )


def test_every_example_renders_to_valid_objects():
    examples = sorted((REPO / "examples").glob("*.yaml"))
    text = "\n---\n".join(p.read_text() for p in examples) + "\n---\nkind: ConfigMap\n"
    out = render("-f", "-", stdin=text)
    assert out.returncode == 0, out.stderr
    objects = list(yaml.safe_load_all(out.stdout))
    docs = [yaml.safe_load(p.read_text()) for p in examples]
    spot = sum(1 for d in docs if d["spec"].get("capacity", {}).get("spot", {}).get("enabled"))
    # ConfigMap, NetworkPolicy, Service, PDB and a dedicated Deployment each; a spot one
    # where spot is on; the router's 7 (operator/router.py) where it is on
    routed = sum(1 for d in docs if d["spec"]["scaling"]["maxReplicas"] > 1)
    assert routed == len(examples)  # by default: each allows more than one replica
    assert len(objects) == 5 * len(examples) + spot + 7 * routed
    for obj in objects:
        kubernetes_validate.validate(obj, "1.32", strict=True)
        assert "ownerReferences" not in obj["metadata"]  # no live owner at review time
    assert "&id" not in out.stdout  # no YAML anchors for a reviewer to decode
    chat = next(o for o in objects if o["metadata"]["name"] == "chat-spot")
    assert chat["metadata"]["namespace"] == "default"


def test_bad_field_is_named_and_exits_1(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: infleet.io/v1alpha1\nkind: InferenceService\nmetadata: {name: x}\n"
        "spec: {model: {uri: 'hf://a/b'}, capacity: {spot: {max: -1}}}\n"
    )
    assert render_main(["-f", str(bad)]) == 1
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.strip() == (
        f"infleet render: {bad}: document 1 (InferenceService x): "
        "spec.capacity.spot.max: Input should be greater than or equal to 0"
    )


def test_unreadable_or_empty_input_exits_1(tmp_path, capsys, monkeypatch):
    assert render_main(["-f", str(tmp_path / "missing.yaml")]) == 1
    assert "No such file" in capsys.readouterr().err
    for text, message in [
        ("kind: ConfigMap\n", "no InferenceService found"),
        ("kind: [unclosed\n", "infleet render: -: "),
        ("kind: InferenceService\nspec: {}\n", "metadata.name: Field required"),
    ]:
        monkeypatch.setattr("sys.stdin", io.StringIO(text))
        assert render_main(["-f", "-"]) == 1
        assert message in capsys.readouterr().err


def test_kube_version_flag_renders_for_that_server(capsys):
    chat = str(REPO / "examples" / "chat-local.yaml")
    assert render_main(["-f", chat, "--kube-version", "1.29"]) == 0
    objects = list(yaml.safe_load_all(capsys.readouterr().out))
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert "exec" in container["lifecycle"]["preStop"]  # no preStop.sleep before 1.30
    out = render("-f", chat, "--kube-version", "1.26")
    assert out.returncode == 2
    assert "Kubernetes 1.26 is older than the oldest supported, 1.27" in out.stderr


def test_prometheus_operator_flag_adds_monitoring(capsys):
    assert (
        render_main(["-f", str(REPO / "examples" / "chat-local.yaml"), "--prometheus-operator"])
        == 0
    )
    kinds = [o["kind"] for o in yaml.safe_load_all(capsys.readouterr().out)]
    assert kinds[-2:] == ["ServiceMonitor", "PrometheusRule"]


def test_render_checks_the_platform_policy_and_names_the_namespace_labels(tmp_path, capsys):
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "nodePools: [{name: h100, nodeSelector: {pool: h100}}]\n"
        "tenants: [{name: research, namespaceSelector: {matchLabels: {tier: research}},"
        " nodePools: [h100], maxGpusPerReplica: 1}]\n"
        "defaults: null\n"
    )
    example = str(REPO / "examples" / "qwen-sglang-spot-only.yaml")  # 2 GPUs per replica
    assert render_main(["-f", example, "--platform-policy", str(policy)]) == 1
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith("metadata.namespace: no platform policy rule admits namespace research")
    )
    args = ["-f", example, "--platform-policy", str(policy), "--namespace-label", "tier=research"]
    assert render_main(args) == 1
    assert (
        "spec.resources.gpus: 2 GPUs per replica; the platform allows 1" in capsys.readouterr().err
    )
    policy.write_text("tenants: [{name: a, maxGpus: -1}]\n")
    assert render_main(["-f", example, "--platform-policy", str(policy)]) == 1
    assert (
        "tenants.0.maxGpus: Input should be greater than or equal to 0" in capsys.readouterr().err
    )
