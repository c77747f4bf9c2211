"""ServiceMonitor/PrometheusRule children; the recording rules load in real Prometheus."""

import shutil
import subprocess

import pytest
import yaml

from infleet.operator.monitoring import ITL_P95, QUEUE, TTFT_P95
from infleet.operator.render import RenderOptions, render_children
from tests.operator.samples import engine_isvc


def rule_of(kind):
    children = render_children(engine_isvc(kind, "mixed"), RenderOptions(prometheus_operator=True))
    return next(c for c in children if c["kind"] == "PrometheusRule")


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
@pytest.mark.parametrize("kind", ["infleet", "vllm", "sglang", "tgi"])
def test_recording_rules_pass_promtool(kind, tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rule_of(kind)["spec"]))
    out = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_each_engine_maps_its_own_series_onto_one_name():
    vllm = {r["record"]: r for r in rule_of("vllm")["spec"]["groups"][0]["rules"]}
    assert set(vllm) == {TTFT_P95, ITL_P95, QUEUE}
    assert "vllm:time_to_first_token_seconds_bucket" in vllm[TTFT_P95]["expr"]
    assert 'namespace="team-a", inferenceservice="chat"' in vllm[TTFT_P95]["expr"]
    assert vllm[QUEUE]["labels"] == {"inferenceservice": "chat"}
    tgi = {r["record"] for r in rule_of("tgi")["spec"]["groups"][0]["rules"]}
    assert TTFT_P95 not in tgi  # TGI exports no time-to-first-token histogram
