"""`infleet bench gpu --scale tiny`: the H100 benchmark's exact code path at toy shapes,
both engines (ours and transformers' continuous batching) and every workload, so the
real run is a one-liner known to work. Also the pure pieces: workloads and figures."""

from __future__ import annotations

import json

import pytest
import torch

from infleet.engine.bench import main
from infleet.engine.bench.gpu_models import SHAPES, hf_config
from infleet.engine.bench.gpu_report import RequestTrace, summarize
from infleet.engine.bench.gpu_roofline import decode_figures, kv_bytes_read
from infleet.engine.bench.gpu_workloads import SCALES, online_requests, workloads
from infleet.engine.model_config import config_from_hf

FIGURES = {"output_tok_s", "total_tok_s", "ttft_p50_s", "ttft_p99_s", "itl_p50_s", "itl_p99_s"}


@pytest.mark.slow
def test_tiny_run_reports_every_figure_for_both_engines(tmp_path, capsys):
    out = tmp_path / "gpu.json"
    argv = ["gpu", "--scale", "tiny", "--models", "qwen3-0.6b", "--rates", "50",
            "--kv-cache-memory", "16MiB", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(out.read_text())
    env = report["environment"]
    assert {"device_name", "torch", "triton", "transformers", "commit"} <= set(env)
    assert env["torch"] == torch.__version__ and len(env["commit"]) in (40, 7)
    runs = report["models"]["qwen3-0.6b"]
    workloads_run = set(runs["workloads"])
    assert workloads_run == {"decode", "offline-mixed", "offline-fixed", "online@50"}
    scale = SCALES["tiny"]
    for name, engines in runs["workloads"].items():
        assert set(engines) == {"ours", "hf"}, name
        outputs = {e: figures["output_tokens"] for e, figures in engines.items()}
        assert outputs["ours"] == outputs["hf"] > 0  # every request ran to its exact length
        for figures in engines.values():
            assert set(figures) >= FIGURES and all(figures[f] > 0 for f in FIGURES)
            assert figures["ttft_p50_s"] <= figures["ttft_p99_s"] <= figures["wall_s"]
    assert runs["workloads"]["offline-fixed"]["ours"]["output_tokens"] == (
        scale.fixed_count * scale.fixed_len
    )
    decode = runs["workloads"]["decode"]["ours"]
    assert decode["output_tokens"] == scale.decode_tokens
    assert 0 < decode["roofline_share"] == runs["decode_roofline_share"]
    assert runs["copy_bandwidth_bytes_s"] > 1e8  # any machine copies faster than 100 MB/s
    assert runs["throughput_ratio_offline_fixed"] > 0
    assert "qwen3-0.6b" in capsys.readouterr().out


def test_full_shapes_are_the_real_checkpoints():
    llama = config_from_hf(hf_config("llama-3.1-8b", "full"))
    assert (llama.num_layers, llama.hidden_size, llama.num_kv_heads) == (32, 4096, 8)
    assert llama.rope_scaling.rope_type == "llama3" and not llama.tie_word_embeddings
    qwen = config_from_hf(hf_config("qwen3-0.6b", "full"))
    assert (qwen.num_layers, qwen.hidden_size, qwen.head_dim, qwen.vocab_size) == (
        28, 1024, 128, 151936,
    )  # fmt: skip
    assert qwen.qk_norm and qwen.tie_word_embeddings
    with pytest.raises(ValueError, match="unknown benchmark model"):
        hf_config("gpt-5", "full")
    assert set(SHAPES) == {"llama-3.1-8b", "qwen3-0.6b"}


def test_workloads_match_their_definitions():
    full = SCALES["full"]
    w = workloads(full, vocab=1000)
    mixed, fixed = w["offline-mixed"], w["offline-fixed"]
    assert len(mixed) == 256 and len(fixed) == 1000
    assert all(100 <= len(r.prompt) <= 1024 and 100 <= r.max_tokens <= 1024 for r in mixed)
    assert all(len(r.prompt) == r.max_tokens == 256 for r in fixed)
    assert workloads(SCALES["tiny"], vocab=1000)["offline-mixed"][0].prompt == (
        workloads(SCALES["tiny"], vocab=1000)["offline-mixed"][0].prompt  # seeded
    )
    arrivals = [r.arrival for r in online_requests(full, 1000, rate=8.0)]
    assert arrivals == sorted(arrivals) and 10 < arrivals[-1] < 50  # 200 requests at ~8/s


def test_figures_from_traces():
    traces = [RequestTrace(0.0, 10, [0.5, 0.6, 0.8]), RequestTrace(0.2, 30, [1.0, 1.1])]
    s = summarize(traces, wall=2.0)
    assert (s["input_tokens"], s["output_tokens"]) == (40, 5)
    assert s["total_tok_s"] == 22.5 and s["ttft_p50_s"] == pytest.approx(0.65)
    assert s["itl_p50_s"] == pytest.approx(0.1)
    llama = config_from_hf(hf_config("llama-3.1-8b", "full"))
    assert kv_bytes_read(llama, 1000, 2) == 131072 * 1000  # 128 KiB per token in bf16
    fig = decode_figures(
        RequestTrace(0.0, 511, [0.0] + [0.01 * i for i in range(1, 257)]), config=llama,
        weight_bytes=16 * 10**9, kv_element_bytes=2, bandwidth=3.0e12,
    )  # fmt: skip
    assert fig["decode_tok_s"] == pytest.approx(100.0)
    assert fig["roofline_share"] == pytest.approx(100.0 * fig["bytes_per_step"] / 3.0e12)


@pytest.mark.slow
def test_kernel_sweep_checks_then_times_each_variant(tmp_path, capsys):
    out = tmp_path / "kernels.json"
    assert main(["gpu", "kernels", "--scale", "tiny", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert {r["case"] for r in rows} == {"decode", "mixed"}
    assert all(r["rel_error"] < 1e-5 and r["us"] > 0 and r["GB_s"] > 0 for r in rows)
    assert "copy bandwidth" in capsys.readouterr().out
