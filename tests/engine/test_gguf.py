"""GGUF loading: the builtin SmolLM2 (Q4_1/Q8_0), dequantization, and tiny GGUF files
converted from random checkpoints, token-exact against transformers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType as Q
from gguf.quants import dequantize as gguf_dequantize
from gguf.quants import quantize

from infleet.engine.core.runner import ModelRunner
from infleet.engine.loader import ModelLoadError, load_model
from infleet.engine.loader.builtin import resolve_builtin
from infleet.engine.loader.dequant import dequantize
from infleet.engine.loader.gguf_format import read_gguf
from tests.engine.tiny_models import PROMPTS, build_checkpoint, hf_greedy, runner_greedy, write_gguf

SAMPLE = "Hello world! 12345 What is the capital of France?  café"
# Ids of SAMPLE under transformers' own GGUF tokenizer conversion of the same file
# (AutoTokenizer.from_pretrained(dir, gguf_file=...)), recorded once: it takes 17 s to build.
SAMPLE_IDS = [
    19556,
    905,
    17,
    216,
    33,
    34,
    35,
    36,
    37,
    1812,
    314,
    260,
    3575,
    282,
    4649,
    47,
    216,
    37366,
]


@pytest.fixture(scope="module")
def smollm():
    return load_model("builtin:smollm2-135m-instruct", device="cpu", dtype="float32")


def test_smollm2_config(smollm):
    c = smollm.config
    assert (c.architecture, c.num_layers, c.hidden_size, c.vocab_size) == ("llama", 30, 576, 49152)
    assert (c.num_heads, c.num_kv_heads, c.head_dim) == (9, 3, 64)
    assert c.tie_word_embeddings and c.max_position_embeddings == 8192
    assert c.rope_theta == 100000.0
    assert smollm.served_name == "smollm2-135m-instruct"


def test_smollm2_tokenizer(smollm):
    tok = smollm.tokenizer
    assert tok.encode(SAMPLE) == SAMPLE_IDS
    for text in [
        SAMPLE,
        "def f(x):\n\treturn x ** 2  # ünïcödé 東京 🚀",
        "  leading and trailing  ",
    ]:
        assert tok.decode(tok.encode(text)) == text
    assert tok.eos_token == "<|im_end|>" and tok.eos_token_ids == {2}
    assert tok.bos_token_id == 1
    ids = tok.encode("<|im_start|>user\nhi<|im_end|>")
    assert ids[0] == 1 and ids[-1] == 2  # special tokens match whole, not as text
    assert tok.decode(ids) == "user\nhi"
    assert tok.decode(ids, skip_special_tokens=False) == "<|im_start|>user\nhi<|im_end|>"


def test_smollm2_chat_template(smollm):
    prompt = smollm.tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}]
    )
    assert prompt == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
        "Face<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_smollm2_answers_paris(smollm):
    tok = smollm.tokenizer
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}]
    )
    ids = tok.encode(prompt, add_special_tokens=False)
    runner = ModelRunner(smollm, num_blocks=8, block_size=16)
    [answer] = runner_greedy(runner, [ids], 20, stop_ids=tok.eos_token_ids)
    assert "Paris" in tok.decode(answer)


@pytest.mark.parametrize("qtype", [Q.Q4_0, Q.Q4_1, Q.Q8_0, Q.F16, Q.F32])
def test_dequantize_matches_gguf_package(qtype):
    values = np.random.default_rng(0).standard_normal((6, 64)).astype(np.float32)
    raw = quantize(values, qtype)
    got = dequantize(raw.reshape(-1).view(np.uint8), qtype, (6, 64))
    want = gguf_dequantize(raw, qtype).reshape(6, 64)
    assert torch.equal(got, torch.from_numpy(np.ascontiguousarray(want, dtype=np.float32)))


def test_reader_matches_smollm2_file():
    gguf = read_gguf(resolve_builtin("smollm2-135m-instruct"))
    assert gguf.metadata["general.architecture"] == "llama"
    assert len(gguf.tensors) == 30 * 9 + 2
    for name in ("token_embd.weight", "blk.0.attn_q.weight"):  # Q8_0, Q4_1
        t = gguf.tensors[name]
        rows = np.asarray(t.raw).reshape(t.shape[0], -1)[:128]  # enough blocks, less time
        want = gguf_dequantize(rows, t.qtype)
        got = dequantize(rows.reshape(-1), t.qtype, (128, t.shape[1]))
        assert torch.equal(got, torch.from_numpy(want))


@pytest.mark.parametrize(
    "arch,overrides",
    [("llama", {}), ("qwen3", {"head_dim": 32, "tie_word_embeddings": True})],
    ids=["llama", "qwen3-tied"],
)
def test_tiny_gguf_matches_transformers(tmp_path, arch, overrides):
    hf_dir = build_checkpoint(tmp_path / "hf", arch, **overrides)
    path = write_gguf(hf_dir, tmp_path / "tiny.gguf")
    from_gguf = load_model(str(path), device="cpu", dtype="float32")
    from_hf = load_model(str(hf_dir), device="cpu", dtype="float32")
    assert from_gguf.served_name == "tiny"
    assert from_gguf.config.tie_word_embeddings == from_hf.config.tie_word_embeddings
    for text in PROMPTS:  # the vocab rebuilt from GGUF metadata tokenizes like tokenizer.json
        assert from_gguf.tokenizer.encode(text) == from_hf.tokenizer.encode(text)
    assert from_gguf.tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}]
    ) == from_hf.tokenizer.apply_chat_template([{"role": "user", "content": "hi"}])
    prompts = [from_hf.tokenizer.encode(p) for p in PROMPTS]
    runner = ModelRunner(from_gguf, num_blocks=64, block_size=4)
    assert runner_greedy(runner, prompts, 16, prefill_chunk=6) == hf_greedy(hf_dir, prompts, 16)


def test_not_a_gguf_file(tmp_path):
    path = tmp_path / "broken.gguf"
    path.write_bytes(b"NOPE" + bytes(64))
    with pytest.raises(ModelLoadError, match="not a GGUF file"):
        load_model(str(path), device="cpu")
