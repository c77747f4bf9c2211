"""The engine table: each kind's real command line, and fields it cannot honour."""

import json

import pytest

from infleet.operator.errors import SpecError
from infleet.operator.pod_security import ENGINE_ENV
from infleet.operator.render import render_children
from tests.operator.samples import engine_isvc, isvc


def container(isvc):
    deployment = next(c for c in render_children(isvc) if c["kind"] == "Deployment")
    return deployment["spec"]["template"]["spec"]["containers"][0]


def test_vllm_command_line():
    c = container(
        engine_isvc(
            "vllm",
            "mixed",
            model={"name": "llama"},
            resources={"gpus": 2},
            engine={
                "parallelism": {"tensor": 2, "expert": 2},
                "quantization": "fp8",
                "kvCache": {"dtype": "fp8"},
                "lora": {"maxAdapters": 8, "maxRank": 32},
                "speculative": {"method": "eagle", "draftModel": "org/eagle", "numTokens": 3},
                "args": ["--max-model-len=8192"],
            },
        )
    )
    assert c["image"].startswith("vllm/vllm-openai:")
    assert c["command"] == ["vllm", "serve"]
    speculative = json.dumps(
        {"method": "eagle", "model": "org/eagle", "num_speculative_tokens": 3}, sort_keys=True
    )
    assert c["args"] == [
        "/mnt/models",
        "--host=$(POD_IP)",
        "--port=8000",
        "--served-model-name=llama",
        "--tensor-parallel-size=2",
        "--pipeline-parallel-size=1",
        "--enable-expert-parallel",
        "--quantization=fp8",
        "--kv-cache-dtype=fp8",
        "--enable-lora",
        "--max-loras=8",
        "--max-lora-rank=32",
        f"--speculative-config={speculative}",
        "--max-model-len=8192",  # the user's flags come last and win
    ]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "2"


def test_sglang_command_line():
    c = container(
        engine_isvc(
            "sglang",
            "mixed",
            resources={"gpus": 4},
            engine={
                "parallelism": {"tensor": 2, "pipeline": 2, "expert": 2},
                "quantization": "fp4",
                "kvCache": {"dtype": "fp8", "dram": "64Gi"},
                "speculative": {"method": "ngram", "numTokens": 5},
            },
        )
    )
    assert c["command"] == ["python3", "-m", "sglang.launch_server"]
    assert c["args"] == [
        "--host=$(POD_IP)",
        "--model-path=/mnt/models",
        "--served-model-name=qwen2.5-7b",
        "--enable-metrics",
        "--port=30000",
        "--tp-size=2",
        "--pp-size=2",
        "--ep-size=2",
        "--quantization=modelopt_fp4",
        "--kv-cache-dtype=fp8_e4m3",
        "--enable-hierarchical-cache",
        "--hicache-size=64",
        "--speculative-algorithm=NGRAM",
        "--speculative-num-draft-tokens=5",
    ]


@pytest.mark.parametrize("quantization", ["fp8", "fp4"])
def test_infleet_quantization_reaches_the_engines_own_flags(quantization, tmp_path):
    """The ConfigMap the operator writes is read by `infleet serve`'s own parser."""
    import yaml

    from infleet.engine.args import parse_args

    isvc = engine_isvc("infleet", "mixed", engine={"quantization": quantization})
    config_map = next(c for c in render_children(isvc) if c["kind"] == "ConfigMap")
    settings = yaml.safe_load(config_map["data"]["engine.yaml"])
    assert settings["quantization"] == quantization
    (tmp_path / "engine.yaml").write_text(config_map["data"]["engine.yaml"])
    assert parse_args(["--config", str(tmp_path / "engine.yaml")]).quantization == quantization


@pytest.mark.parametrize(
    ("speculative", "expected"),
    [
        (
            {"method": "ngram", "numTokens": 5, "promptLookupMax": 3},
            {"method": "ngram", "num_speculative_tokens": 5, "prompt_lookup_max": 3,
             "prompt_lookup_min": 2},
        ),
        (
            {"method": "draft_model", "draftModel": "/models/small", "numTokens": 3},
            {"method": "draft_model", "num_speculative_tokens": 3, "model": "/models/small"},
        ),
        (
            {"method": "self_draft", "selfDraftLayers": 6},
            {"method": "self_draft", "num_speculative_tokens": 4, "num_layers": 6},
        ),
    ],
)  # fmt: skip
def test_infleet_speculation_reaches_the_engines_own_parser(speculative, expected, tmp_path):
    """One --speculative-config object: the ConfigMap's mapping is what `infleet serve`
    parses, and vLLM gets the same JSON (self_draft aside, which is ours)."""
    import yaml

    from infleet.engine.args import parse_args
    from infleet.engine.spec.config import parse_speculative_config

    isvc = engine_isvc("infleet", "mixed", engine={"speculative": speculative})
    config_map = next(c for c in render_children(isvc) if c["kind"] == "ConfigMap")
    settings = yaml.safe_load(config_map["data"]["engine.yaml"])
    assert settings["speculative-config"] == expected
    assert None not in settings["speculative-config"].values()
    (tmp_path / "engine.yaml").write_text(config_map["data"]["engine.yaml"])
    parsed = parse_args(["--config", str(tmp_path / "engine.yaml")]).speculative_config
    assert parsed == parse_speculative_config(expected)
    if speculative["method"] != "self_draft":
        c = container(engine_isvc("vllm", "mixed", engine={"speculative": speculative}))
        flag = next(a for a in c["args"] if a.startswith("--speculative-config="))
        assert json.loads(flag.split("=", 1)[1]) == expected


def test_sglang_draft_model_is_standalone():
    c = container(
        engine_isvc(
            "sglang", "mixed",
            engine={"speculative": {"method": "draft_model", "draftModel": "org/small"}},
        )
    )  # fmt: skip
    assert "--speculative-algorithm=STANDALONE" in c["args"]
    assert "--speculative-draft-model-path=org/small" in c["args"]


def test_tgi_command_line_from_a_pvc():
    isvc = engine_isvc(
        "tgi",
        "dedicated-only",
        resources={"gpus": 2},
        engine={
            "parallelism": {"tensor": 2},
            "quantization": "fp8",
            "speculative": {"method": "ngram"},
        },
    )
    c = container(isvc)
    assert c["command"] == ["text-generation-launcher"]
    assert c["args"] == [
        "--hostname=$(POD_IP)",
        "--model-id=/mnt/models/mistral-7b",
        "--port=8080",
        "--num-shard=2",
        "--quantize=fp8",
        "--speculate=4",
    ]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in c["volumeMounts"]


def test_user_env_follows_pod_ip_and_image_override_wins():
    c = container(
        engine_isvc(
            "vllm",
            "mixed",
            engine={
                "image": "registry.local/vllm:patched",
                "env": [
                    {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "t"}}}
                ],
            },
        )
    )
    assert c["image"] == "registry.local/vllm:patched"
    assert [e["name"] for e in c["env"]] == ["POD_IP", *ENGINE_ENV, "HF_TOKEN"]


@pytest.mark.parametrize(
    ("kind", "extra", "field", "message"),
    [
        (
            "infleet",
            {"engine": {"parallelism": {"tensor": 2, "pipeline": 2}}, "resources": {"gpus": 4}},
            "engine.parallelism.pipeline",
            "engine infleet runs tensor (2) or pipeline (2) parallelism, not both in one "
            "replica (vllm and sglang do)",
        ),
        (
            "tgi",
            {"engine": {"quantization": "fp4"}},
            "engine.quantization",
            "quantization fp4 is not supported by engine tgi",
        ),
        (
            "tgi",
            {"engine": {"kvCache": {"nvme": "200Gi"}}},
            "engine.kvCache.nvme",
            "an NVMe KV tier is not supported by engine tgi",
        ),
        (
            "tgi",
            {"engine": {"lora": {"maxAdapters": 4}}},
            "engine.lora.maxAdapters",
            "dynamic LoRA slots is not supported by engine tgi",
        ),
        (
            "vllm",
            {"engine": {"speculative": {"method": "self_draft", "selfDraftLayers": 4}}},
            "engine.speculative.method",
            "self_draft (infleet only) is not supported by engine vllm",
        ),
        (
            "sglang",
            {"engine": {"speculative": {"method": "self_draft", "selfDraftLayers": 4}}},
            "engine.speculative.method",
            "self_draft (infleet only) is not supported by engine sglang",
        ),
        (
            "infleet",
            {"engine": {"speculative": {"method": "eagle", "draftModel": "org/eagle"}}},
            "engine.speculative.method",
            "eagle (no EAGLE heads) is not supported by engine infleet",
        ),
        (
            "vllm",
            {"model": {"uri": "builtin:smollm2-135m-instruct"}},
            "model.uri",
            "builtin models run on engine kind infleet, not vllm",
        ),
    ],
)
def test_fields_an_engine_cannot_honour_are_named(kind, extra, field, message):
    with pytest.raises(SpecError) as err:
        render_children(engine_isvc(kind, "mixed", **extra))
    assert str(err.value) == f"{field}: {message}"
    assert err.value.field == field


def test_infleet_tensor_and_expert_parallel_reach_the_engines_own_flags(tmp_path):
    """A 2-GPU replica of the bundled engine: its ConfigMap parses into TP=2 with experts
    spread over the ranks, and the pod gets a memory-backed /dev/shm sized for NCCL."""

    from infleet.engine.args import parse_args

    isvc = engine_isvc(
        "infleet", "mixed", resources={"gpus": 2},
        engine={"parallelism": {"tensor": 2, "expert": 2}},
    )  # fmt: skip
    children = render_children(isvc)
    config_map = next(c for c in children if c["kind"] == "ConfigMap")
    (tmp_path / "engine.yaml").write_text(config_map["data"]["engine.yaml"])
    args = parse_args(["--config", str(tmp_path / "engine.yaml")])
    assert (args.tensor_parallel_size, args.enable_expert_parallel) == (2, True)
    pod = next(c for c in children if c["kind"] == "Deployment")["spec"]["template"]["spec"]
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "4Gi"}} in pod["volumes"]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in pod["containers"][0]["volumeMounts"]


def test_infleet_pipeline_parallel_reaches_the_engines_own_flags(tmp_path):
    from infleet.engine.args import parse_args

    isvc = engine_isvc(
        "infleet", "mixed", resources={"gpus": 2}, engine={"parallelism": {"pipeline": 2}}
    )
    config_map = next(c for c in render_children(isvc) if c["kind"] == "ConfigMap")
    (tmp_path / "engine.yaml").write_text(config_map["data"]["engine.yaml"])
    args = parse_args(["--config", str(tmp_path / "engine.yaml")])
    assert (args.tensor_parallel_size, args.pipeline_parallel_size) == (1, 2)


@pytest.mark.parametrize(
    ("kind", "parallelism", "gpus", "field", "message"),
    [
        (
            "vllm", {"tensor": 2}, 4, "resources.gpus",
            "4 GPUs per replica, but engine.parallelism.tensor (2) x pipeline (1) = 2: they "
            "must be equal",
        ),
        (
            "sglang", {"tensor": 2, "pipeline": 2}, 8, "resources.gpus",
            "8 GPUs per replica, but engine.parallelism.tensor (2) x pipeline (2) = 4: they "
            "must be equal",
        ),
        (
            "infleet", {"tensor": 4, "expert": 2}, 4, "engine.parallelism.expert",
            "infleet's expert-parallel degree is the tensor-parallel degree: set it to "
            "engine.parallelism.tensor (4) or 1, not 2",
        ),
    ],
)  # fmt: skip
def test_parallel_degrees_that_disagree_are_named_with_numbers(
    kind, parallelism, gpus, field, message
):
    isvc = engine_isvc(kind, "mixed", resources={"gpus": gpus},
                       engine={"parallelism": parallelism})  # fmt: skip
    with pytest.raises(SpecError) as err:
        render_children(isvc)
    assert str(err.value) == f"{field}: {message}"


@pytest.mark.parametrize(
    ("engine", "field"),
    [
        ({"lora": {"maxAdapters": 2}}, "engine.lora.maxAdapters"),
        ({"speculative": {"method": "ngram"}}, "engine.speculative.method"),
        ({"kvCache": {"dram": "4Gi"}}, "engine.kvCache.dram"),
    ],
)
def test_infleet_refuses_one_rank_features_with_several_ranks(engine, field):
    # The bundled engine refuses these at start-up with TP or PP above 1: the operator says
    # so first, as UnsupportedByEngine naming the field, instead of crash-looping pods.
    spec = {"kind": "infleet", "parallelism": {"tensor": 2}, **engine}
    with pytest.raises(SpecError) as err:
        render_children(isvc(resources={"gpus": 2}, engine=spec))
    assert err.value.reason == "UnsupportedByEngine" and err.value.field == field
    render_children(isvc(resources={"gpus": 1}, engine={"kind": "infleet", **engine}))
