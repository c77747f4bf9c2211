"""What an adapter's request should answer: the same greedy completion by an engine driven
in this process (SmolLM2, float32 on CPU, as `infleet serve` runs it here)."""

from __future__ import annotations

from pathlib import Path

from infleet.engine.messages import AdapterRef, SamplingParams
from tests.engine.serving import smollm2_engine
from tests.lora.written_adapters import write_dir

PROMPT = "The capital of France is"
MAX_TOKENS = 8


def adapter_text(files: dict[str, bytes] | None, tmp_path: Path, prompt: str = PROMPT) -> str:
    """The greedy completion of `prompt` with the adapter made of `files` (None: the base
    model), MAX_TOKENS tokens or up to the end of sequence."""
    engine = smollm2_engine(enable_lora=True, max_lora_rank=16)
    lora = None
    if files is not None:
        lora = AdapterRef("reference", str(write_dir(tmp_path / "reference", files)), 1)
    params = SamplingParams(max_tokens=MAX_TOKENS, temperature=0.0)
    engine.add_request("reference", engine.tokenizer.encode(prompt), params, lora=lora)
    text = ""
    while engine.has_unfinished():
        text += "".join(out.text for out in engine.step())
    return text


def completion_body(model: str) -> dict:
    return {"model": model, "prompt": PROMPT, "max_tokens": MAX_TOKENS, "temperature": 0}
