"""`infleet bench` end to end on a tiny random model: both engines run the same workload."""

import json

import pytest

from infleet.cli import main as infleet_main
from infleet.engine.bench.stats import percentile
from infleet.engine.bench.workloads import parse_range
from tests.engine.tiny_models import build_checkpoint

pytestmark = pytest.mark.slow


def test_bench_reports_both_engines_and_the_ratio(tmp_path, capsys):
    model = build_checkpoint(tmp_path / "tiny", "llama", seed=1)
    out = tmp_path / "report.json"
    argv = ["bench", "--model", str(model), "--device", "cpu", "--num-prompts", "6"]
    argv += ["--input-len", "4:30", "--output-len", "2:9", "--hf-batch-size", "4", "--repeat", "2"]
    argv += ["--kv-cache-memory", "8MiB", "--out", str(out)]
    assert infleet_main(argv) == 0
    report = json.loads(out.read_text())
    assert "ratio (output tok/s, infleet / hf)" in capsys.readouterr().out
    eng, hf = report["engine"], report["hf"]
    assert eng["requests"] == hf["requests"] == 6
    assert (
        eng["output_tokens"] == hf["output_tokens"] and eng["prompt_tokens"] == hf["prompt_tokens"]
    )
    assert 2 * 6 <= eng["output_tokens"] <= 9 * 6
    for s in (eng, hf):
        assert s["output_tok_s"] > 0 and s["total_tok_s"] > s["output_tok_s"]
        assert 0 < s["ttft_p50_s"] <= s["ttft_p99_s"] and 0 < s["itl_p50_s"] <= s["itl_p99_s"]
    assert report["ratio_output_tok_s"] == round(eng["output_tok_s"] / hf["output_tok_s"], 2)
    assert len(report["engine_runs_output_tok_s"]) == len(report["hf_runs_output_tok_s"]) == 2
    assert eng["output_tok_s"] == max(report["engine_runs_output_tok_s"])
    assert report["device"].startswith("cpu") and report["torch"] and report["commit"]
    assert report["workload"] == {
        "name": "mixed",
        "num_prompts": 6,
        "input_len": [4, 30],
        "output_len": [2, 9],
        "seed": 0,
    }


def test_helpers():
    assert parse_range("32:512") == (32, 512) and parse_range("7") == (7, 7)
    with pytest.raises(Exception, match="LO <= HI"):
        parse_range("9:3")
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5 and percentile([5.0], 99) == 5.0
