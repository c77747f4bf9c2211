"""Metrics collection against real servers: prometheus_client's exposition server, our
engine serving a tiny random model, and a real Prometheus scraping both."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from infleet.autoscaler.engines import ENGINE_METRICS, FIELDS, exported_samples, replica_metrics
from infleet.autoscaler.prometheus_api import PrometheusSource
from infleet.autoscaler.scrape import ScrapeLimits, ScrapePool, ScrapeTarget, samples
from infleet.operator.autoscale import Autoscaler
from tests.autoscaler.live_servers import free_port, infleet_serve, prometheus, scraped, wait_until
from tests.autoscaler.test_timer import pod

# What each engine prints (names from their sources; labels trimmed), one replica each.
ENGINE_TEXT = {
    "vllm": """# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="m"} 3.0
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="m"} 17.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{model_name="m"} 0.42
# TYPE vllm:num_preemptions_total counter
vllm:num_preemptions_total{model_name="m"} 5.0
# TYPE vllm:request_success_total counter
vllm:request_success_total{finished_reason="stop",model_name="m"} 100.0
vllm:request_success_total{finished_reason="length",model_name="m"} 20.0
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{model_name="m"} 122880.0
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{model_name="m"} 30720.0
""",
    "sglang": """# TYPE sglang:num_queue_reqs gauge
sglang:num_queue_reqs{model_name="m"} 3.0
# TYPE sglang:num_running_reqs gauge
sglang:num_running_reqs{model_name="m"} 17.0
# TYPE sglang:token_usage gauge
sglang:token_usage{model_name="m"} 0.42
# TYPE sglang:num_retracted_requests_total counter
sglang:num_retracted_requests_total{model_name="m"} 5.0
# TYPE sglang:num_requests_total counter
sglang:num_requests_total{model_name="m"} 120.0
# TYPE sglang:prompt_tokens_total counter
sglang:prompt_tokens_total{model_name="m"} 122880.0
# TYPE sglang:generation_tokens_total counter
sglang:generation_tokens_total{model_name="m"} 30720.0
""",
    "tgi": """# TYPE tgi_queue_size gauge
tgi_queue_size 3
# TYPE tgi_batch_current_size gauge
tgi_batch_current_size 17
# TYPE tgi_request_success counter
tgi_request_success{stop_reason="eos"} 120
# TYPE tgi_request_input_length histogram
tgi_request_input_length_bucket{le="1024.0"} 60
tgi_request_input_length_bucket{le="+Inf"} 120
tgi_request_input_length_sum 122880
tgi_request_input_length_count 120
# TYPE tgi_request_generated_tokens histogram
tgi_request_generated_tokens_bucket{le="+Inf"} 120
tgi_request_generated_tokens_sum 30720
tgi_request_generated_tokens_count 120
""",
}


@pytest.mark.parametrize("kind", sorted(ENGINE_TEXT))
def test_each_engine_kind_maps_onto_one_view(kind):
    view = replica_metrics(kind, "p0", "spot", samples(ENGINE_TEXT[kind]))
    assert (view.waiting, view.running, view.requests_total) == (3.0, 17.0, 120.0)
    # The request shape: 1024 prompt and 256 output tokens per request, for every kind.
    assert (view.prompt_tokens_total, view.generation_tokens_total) == (122880.0, 30720.0)
    if kind == "tgi":  # TGI exports neither KV usage nor preemptions
        assert view.kv_usage is None and view.preemptions_total is None
    else:
        assert (view.kv_usage, view.preemptions_total) == (0.42, 5.0)


def test_a_replica_without_queue_metrics_is_an_error_naming_them():
    with pytest.raises(ValueError, match="vllm:num_requests_waiting"):
        replica_metrics("vllm", "p0", "spot", samples(ENGINE_TEXT["tgi"]))
    with pytest.raises(ValueError, match=r"engine\.kind 'llamacpp'"):
        replica_metrics("llamacpp", "p0", "spot", {})


@pytest.fixture(scope="module")
def vllm_like():
    """A live exposition server with vLLM's series (prometheus_client's own server)."""
    registry = CollectorRegistry()
    labels = ["model_name"]
    waiting = Gauge("vllm:num_requests_waiting", "w", labels, registry=registry)
    running = Gauge("vllm:num_requests_running", "r", labels, registry=registry)
    kv = Gauge("vllm:kv_cache_usage_perc", "kv", labels, registry=registry)
    preempt = Counter("vllm:num_preemptions", "p", labels, registry=registry)
    success = Counter("vllm:request_success", "s", [*labels, "finished_reason"], registry=registry)
    waiting.labels("m").set(4)
    running.labels("m").set(12)
    kv.labels("m").set(0.25)
    preempt.labels("m").inc(2)
    success.labels("m", "stop").inc(30)
    success.labels("m", "length").inc(7)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    yield f"127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_scrape_reads_a_live_exposition_server_and_reports_a_dead_one(vllm_like):
    dead = f"http://127.0.0.1:{free_port()}/metrics"
    read = ScrapePool(ScrapeLimits(timeout_s=1.0)).scrape(
        "team-a/chat",
        [
            ScrapeTarget("chat-spot-a", "spot", f"http://{vllm_like}/metrics"),
            ScrapeTarget("chat-spot-b", "spot", dead),
        ],
        "vllm",
        now=0.0,
    )
    assert len(read.metrics) == 1 and [f.target for f in read.failures] == ["chat-spot-b"]
    v = read.metrics[0]
    assert (v.pod, v.pool, v.waiting, v.running, v.kv_usage) == ("chat-spot-a", "spot", 4, 12, 0.25)
    assert (v.preemptions_total, v.requests_total) == (2.0, 37.0)


def ours_model(url: str) -> str:
    return httpx.get(url + "/v1/models").json()["data"][0]["id"]


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    pytest.importorskip("torch")
    from tests.engine.tiny_models import build_checkpoint

    model = build_checkpoint(tmp_path_factory.mktemp("tiny-llama"), "llama", seed=5)
    with infleet_serve(model) as url:
        for _ in range(3):
            body = {"model": "tiny-llama0", "prompt": "The quick brown fox", "max_tokens": 4}
            body["model"] = httpx.get(url + "/v1/models").json()["data"][0]["id"]
            response = httpx.post(url + "/v1/completions", json=body, timeout=120)
            assert response.status_code == 200, response.text
        yield url


@pytest.mark.slow
def test_scrape_reads_our_engine_serving_a_tiny_model(engine):
    read = ScrapePool().scrape(
        "team-a/chat",
        [ScrapeTarget("chat-dedicated-a", "dedicated", engine + "/metrics")],
        "infleet",
        now=0.0,
    )
    assert read.failures == []
    (v,) = read.metrics
    assert v.waiting == 0 and v.running == 0  # idle between requests
    assert v.requests_total == 3.0  # the three completions above
    assert v.preemptions_total == 0.0
    assert v.kv_usage is not None and 0.0 <= v.kv_usage <= 1.0
    assert v.prompt_tokens_total > 0 and 3 <= v.generation_tokens_total <= 12
    # Every name the table holds for our engine is one it exports: what the simulator
    # prints (exported_samples) is exactly what a real replica of ours serves.
    served = set(samples(httpx.get(engine + "/metrics").text))
    table = ENGINE_METRICS["infleet"]
    names = {getattr(table, f)[0] for f in FIELDS if getattr(table, f)}
    assert names <= served, names - served
    assert set(exported_samples("infleet", **dict.fromkeys(FIELDS, 1.0))) == names


@pytest.mark.slow
def test_prometheus_api_source_reads_a_live_prometheus(engine, vllm_like):
    service = {"namespace": "team-a", "inferenceservice": "chat"}
    engine_address = engine.removeprefix("http://")
    targets = [
        (engine_address, {**service, "pool": "dedicated", "pod": "chat-dedicated-a"}),
        (vllm_like, {**service, "pool": "spot", "pod": "chat-spot-a"}),
        (
            vllm_like,
            {"namespace": "team-b", "inferenceservice": "chat", "pool": "spot", "pod": "x"},
        ),
    ]
    with prometheus(targets) as url:
        wait_until(lambda: scraped(url, "infleet:num_requests_waiting", 1), 60, "the engine")
        # prometheus_client's own server answers Prometheus in OpenMetrics, which (0.26)
        # spells `vllm:` as `vllm_`: the source reads either spelling.
        vllm = "{__name__=~'vllm[:_]num_requests_waiting'}"
        wait_until(lambda: scraped(url, vllm, 2), 60, "the vLLM series")
        source = PrometheusSource(url)
        (ours,) = source.fetch("infleet", "team-a", "chat")
        assert (ours.pod, ours.pool, ours.waiting, ours.running) == (
            "chat-dedicated-a",
            "dedicated",
            0,
            0,
        )
        assert ours.requests_total == 3.0 and ours.kv_usage is not None
        (theirs,) = source.fetch("vllm", "team-a", "chat")  # team-b's replica is not ours
        assert (theirs.pod, theirs.waiting, theirs.running, theirs.requests_total) == (
            "chat-spot-a", 4.0, 12.0, 37.0,
        )  # fmt: skip
        assert source.fetch("sglang", "team-a", "chat") == []
        with pytest.raises(ValueError, match="Prometheus query"):
            source._query("sum by (")
        # The operator's timer through this source: only pods ready now count (Prometheus
        # keeps a replaced pod's series for minutes), and a failure is reported, not raised.
        pods = [pod("chat-spot-a", "spot"), pod("chat-spot-b", "spot", state="starting")]
        read = Autoscaler(source).read("vllm", ("team-a", "chat"), pods, 0.0)
        assert [m.pod for m in read.metrics] == ["chat-spot-a"] and read.failures == []
        pods = [pod("chat-spot-a", "spot", state="starting")]
        read = Autoscaler(source).read("vllm", ("team-a", "chat"), pods, 0.0)
        assert (read.metrics, read.failures) == ([], [])
        gone = PrometheusSource(f"http://127.0.0.1:{free_port()}", timeout_s=2.0)
        read = Autoscaler(gone).read("vllm", ("team-a", "chat"), pods, 0.0)
        assert read.metrics == [] and read.failures[0].source == "prometheus"
        assert read.ttft_p95_s is None
        # The same failure as the counters and the condition take it.
        assert gone.read("vllm", "team-a", "chat")[1][0].reason == "ConnectError"
        assert gone.ttft_p95("infleet", "team-a", "chat") is None
        not_prometheus = PrometheusSource(engine)  # answers, but 404 on the query API
        (rejected,) = not_prometheus.read("infleet", "team-a", "chat")[1]
        assert (
            rejected.permanent and rejected.reason == "Rejected" and "HTTP 404" in rejected.message
        )
        # The blind policy's evidence: the service's TTFT p95 from our engine's histogram.
        body = {"model": ours_model(engine), "prompt": "Hello there", "max_tokens": 2}
        assert httpx.post(engine + "/v1/completions", json=body, timeout=120).status_code == 200
        p95 = wait_until(lambda: source.ttft_p95("infleet", "team-a", "chat"), 60, "a TTFT p95")
        assert 0.0 < p95 < 160.0
