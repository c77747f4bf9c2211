"""Loading MoE checkpoints: GGUF (llama.cpp's stacked-experts layout) fills the same
weights as safetensors, and a checkpoint that disagrees with its config (expert count,
top-k, shapes) is refused with both numbers in the message."""

from __future__ import annotations

import json

import pytest
import torch

from infleet.engine.loader import load_model
from infleet.engine.model_config import ModelLoadError
from tests.engine.tiny_models import build_checkpoint, write_gguf

SMALL = dict(hidden_size=32, intermediate_size=48, num_experts_per_tok=2, num_hidden_layers=2)
CASES = {
    "mixtral": ("mixtral", dict(SMALL, num_local_experts=4)),
    "qwen3_moe-dense-layer": (
        "qwen3_moe",
        dict(
            SMALL, num_experts=4, moe_intermediate_size=24, norm_topk_prob=True, mlp_only_layers=[0]
        ),
    ),
    "qwen2_moe-shared": (
        "qwen2_moe",
        dict(SMALL, num_experts=4, moe_intermediate_size=24, shared_expert_intermediate_size=40),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_gguf_fills_the_same_weights_as_safetensors(tmp_path, name):
    arch, overrides = CASES[name]
    hf_dir = build_checkpoint(tmp_path / "hf", arch, **overrides)
    from_hf = load_model(str(hf_dir), device="cpu", dtype="float32")
    from_gguf = load_model(
        str(write_gguf(hf_dir, tmp_path / "tiny.gguf")), device="cpu", dtype="float32"
    )
    assert from_gguf.config.architecture == from_hf.config.architecture
    assert from_gguf.config.moe == from_hf.config.moe
    want = from_hf.model.state_dict()
    got = from_gguf.model.state_dict()
    assert got.keys() == want.keys()
    for key, tensor in want.items():
        assert torch.equal(got[key], tensor), key


@pytest.fixture(scope="module")
def qwen3_moe(tmp_path_factory):
    arch, overrides = CASES["qwen3_moe-dense-layer"]
    return build_checkpoint(tmp_path_factory.mktemp("qwen3moe"), arch, **overrides)


def _with_config(src, tmp_path, **changes):
    """A copy of checkpoint `src` whose config.json says something else."""
    dst = tmp_path / "edited"
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).symlink_to(f)
    (dst / "config.json").unlink()
    cfg = json.loads((src / "config.json").read_text())
    cfg.update(changes)
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


@pytest.mark.parametrize(
    "changes,message",
    [
        # The checkpoint has 4 experts; the config says 6: the router's rows say so first.
        (
            {"num_experts": 6, "num_local_experts": 6},
            r"shape \(4, 32\) where \(6, 32\) .*num_experts=6",
        ),
        # The config says 3: expert 3's matrices have no place.
        (
            {"num_experts": 3, "num_local_experts": 3},
            r"experts\.3\..*expert 3 is beyond .*num_experts=3",
        ),
        ({"num_experts_per_tok": 5}, r"num_experts_per_tok=5 must be between 1 and num_experts=4"),
        (
            {"moe_intermediate_size": 16},
            r"shape \(32, 24\) where \(32, 16\) expected \(hidden_size=32, expert intermediate_size=16\)",
        ),
        ({"mlp_only_layers": [2]}, r"mlp_only_layers \[2\] are outside the 2 layers"),
    ],
    ids=["more-experts", "fewer-experts", "top-k", "expert-width", "dense-layer-index"],
)
def test_a_checkpoint_that_disagrees_with_its_config_is_refused(
    qwen3_moe, tmp_path, changes, message
):
    with pytest.raises(ModelLoadError, match=message):
        load_model(str(_with_config(qwen3_moe, tmp_path, **changes)), device="cpu")


def test_a_checkpoint_missing_an_expert_is_refused_with_the_counts(qwen3_moe, tmp_path):
    from safetensors.torch import load_file, save_file

    dst = _with_config(qwen3_moe, tmp_path)
    weights = load_file(qwen3_moe / "model.safetensors")
    (dst / "model.safetensors").unlink()
    save_file(
        {k: v for k, v in weights.items() if ".experts.3." not in k}, dst / "model.safetensors"
    )
    with pytest.raises(
        ModelLoadError, match=r"3 experts in model\.layers\.1 where config\.json says num_experts=4"
    ):
        load_model(str(dst), device="cpu")


def test_an_unsupported_architecture_names_itself_and_the_supported_list(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["DeepseekV3ForCausalLM"]}))
    with pytest.raises(ModelLoadError) as err:
        load_model(str(tmp_path), device="cpu")
    line = str(err.value)
    assert line.startswith("unsupported model architecture DeepseekV3ForCausalLM; supported: ")
    assert "MixtralForCausalLM" in line and "Qwen2MoeForCausalLM" in line and "\n" not in line


def test_weights_are_counted_with_their_experts_and_the_kv_pool_is_the_dense_siblings(tmp_path):
    import transformers

    from infleet.engine.core.runner import ModelRunner
    from infleet.engine.models.weight_count import count_weights

    arch, overrides = CASES["mixtral"]
    hf_dir = build_checkpoint(tmp_path / "hf", arch, **overrides)
    loaded = load_model(str(hf_dir), device="cpu", dtype="float32")
    count = count_weights(loaded.model, loaded.config.moe.top_k)
    hf = transformers.AutoModelForCausalLM.from_pretrained(hf_dir)
    assert count.total == hf.num_parameters()  # every expert is resident
    experts = 2 * 4 * 3 * 32 * 48  # layers x experts x (gate, up, down) x hidden x intermediate
    assert count.experts == experts
    assert count.active_per_token == count.total - experts // 2  # top-2 of 4
    assert count.bytes == 4 * count.total
    assert "in routed experts" in count.describe()
    # The KV cache depends on attention only: the same bytes per block as a dense Mistral.
    dense = load_model(
        str(build_checkpoint(tmp_path / "dense", "mistral", hidden_size=32, intermediate_size=96)),
        device="cpu",
        dtype="float32",
    )
    assert ModelRunner.kv_bytes_per_block(
        loaded.config, 16, torch.float32
    ) == ModelRunner.kv_bytes_per_block(dense.config, 16, torch.float32)


@pytest.mark.parametrize("name", ["mixtral", "qwen2_moe-shared"])
def test_transformers_5_stacked_experts_load_whole(tmp_path, name):
    """transformers 5 holds each layer's experts stacked (`experts.gate_up_proj`,
    `experts.down_proj`): the same weights as the per-expert names give."""
    import transformers

    from infleet.engine.models import build_model, load_weights

    arch, overrides = CASES[name]
    hf_dir = build_checkpoint(tmp_path / "hf", arch, **overrides)
    from_files = load_model(str(hf_dir), device="cpu", dtype="float32")
    hf = transformers.AutoModelForCausalLM.from_pretrained(hf_dir)
    state = hf.state_dict()
    assert "model.layers.0.mlp.experts.gate_up_proj" in state
    model = build_model(from_files.config, torch.device("cpu"), torch.float32)
    load_weights(model, state.items())
    for key, tensor in from_files.model.state_dict().items():
        assert torch.equal(model.state_dict()[key], tensor), key
    state["model.layers.1.mlp.experts.down_proj"] = state["model.layers.1.mlp.experts.down_proj"][
        :3
    ]
    with pytest.raises(
        ModelLoadError, match=r"shape \(3, 32, (\d+)\) where \(4, 32, \1\) expected \(num_experts=4"
    ):
        load_weights(
            build_model(from_files.config, torch.device("cpu"), torch.float32), state.items()
        )
