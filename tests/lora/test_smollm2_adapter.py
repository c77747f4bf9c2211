"""A real adapter: peft fine-tunes a LoRA on SmolLM2-135M (CPU, float32, a few dozen steps)
to answer a question with a fixed phrase; served by our engine, the adapter answers with
it and the base model does not."""

from __future__ import annotations

import pytest
import torch

from infleet.engine.messages import AdapterRef, SamplingParams
from tests.engine.serving import smollm2, smollm2_engine

QUESTION = "Question: What do the purple elephants do?\nAnswer:"
PHRASE = " They dance on the moon every Tuesday."
MAX_STEPS = 80
LAYERS = list(range(24, 30))  # the top layers only: the backward pass stops below them


def hf_twin():
    """A transformers Llama with our loaded SmolLM2's weights (already dequantized; loading
    the GGUF through transformers takes a minute): the packed q/k/v and gate/up split."""
    import transformers

    c = smollm2().config
    config = transformers.LlamaConfig(
        vocab_size=c.vocab_size, hidden_size=c.hidden_size, intermediate_size=c.intermediate_size,
        num_hidden_layers=c.num_layers, num_attention_heads=c.num_heads,
        num_key_value_heads=c.num_kv_heads, head_dim=c.head_dim, rms_norm_eps=c.rms_norm_eps,
        rope_theta=c.rope_theta, max_position_embeddings=c.max_position_embeddings,
        tie_word_embeddings=True,
    )  # fmt: skip
    ours = dict(smollm2().model.named_parameters())
    q, kv = c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim
    state = {n: t for n, t in ours.items() if "qkv_proj" not in n and "gate_up_proj" not in n}
    for i in range(c.num_layers):
        at = f"model.layers.{i}"
        parts = ours[f"{at}.self_attn.qkv_proj.weight"].split([q, kv, kv])
        for name, t in zip(("q_proj", "k_proj", "v_proj"), parts, strict=True):
            state[f"{at}.self_attn.{name}.weight"] = t
        gate, up = ours[f"{at}.mlp.gate_up_proj.weight"].chunk(2)
        state[f"{at}.mlp.gate_proj.weight"], state[f"{at}.mlp.up_proj.weight"] = gate, up
    from transformers.initialization import no_init_weights

    with no_init_weights():  # every weight is loaded next: a random init would waste ~10 s
        model = transformers.LlamaForCausalLM(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)
    model.tie_weights()
    return model


@pytest.fixture(scope="session")
def trained_adapter(tmp_path_factory):
    """Trained once per session: (adapter directory, final training loss)."""
    import peft

    tokenizer = smollm2().tokenizer
    prompt, answer = tokenizer.encode(QUESTION), tokenizer.encode(PHRASE)
    ids = torch.tensor([prompt + answer])
    labels = ids.clone()
    labels[0, : len(prompt)] = -100  # learn the answer only
    torch.manual_seed(0)
    model = hf_twin()
    config = peft.LoraConfig(
        r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "o_proj", "up_proj"],
        layers_to_transform=LAYERS,
    )  # fmt: skip
    model = peft.get_peft_model(model, config)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    loss = torch.tensor(float("inf"))
    for _ in range(MAX_STEPS):
        loss = model(input_ids=ids, labels=labels).loss
        if loss.item() < 0.02:
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    out = tmp_path_factory.mktemp("smollm2-lora")
    model.save_pretrained(out)
    return out, loss.item()


def answer(engine, lora: AdapterRef | None) -> str:
    params = SamplingParams(max_tokens=12, temperature=0.0)
    engine.add_request("q", engine.tokenizer.encode(QUESTION), params, lora=lora)
    text = ""
    while engine.has_unfinished():
        text += "".join(out.text for out in engine.step())
    return text


@pytest.mark.slow
def test_trained_adapter_answers_with_its_phrase_and_base_does_not(trained_adapter):
    path, loss = trained_adapter
    assert loss < 0.05, f"training did not converge (loss {loss:.3f})"
    engine = smollm2_engine(enable_lora=True, max_lora_rank=8)
    assert answer(engine, AdapterRef("elephants", str(path), 1)).startswith(PHRASE)
    assert "moon" not in answer(engine, None)
