"""Speculation does work on a real model: SmolLM2 on the committed input-grounded prompts
(bench/prompts/spec_grounded.jsonl: edit, copy, quote a given text). The n-gram proposer's
drafts are accepted at least half the time, greedy tokens are the same as without
speculation, and the target runs fewer forwards than it generates tokens."""

import json
from pathlib import Path

import pytest
import torch

from infleet.engine.messages import SamplingParams
from infleet.engine.spec.config import parse_speculative_config
from tests.engine.serving import smollm2, smollm2_engine

PROMPTS = Path(__file__).resolve().parents[2] / "bench" / "prompts" / "spec_grounded.jsonl"
GREEDY = SamplingParams(max_tokens=24, temperature=0.0)


def grounded_prompts() -> list[list[int]]:
    tok = smollm2().tokenizer
    lines = PROMPTS.read_text().splitlines()
    return [
        tok.encode(tok.apply_chat_template(json.loads(line)["messages"]), add_special_tokens=False)
        for line in lines
    ]


def generate(spec: str | None, prompts: list[list[int]]):
    kw = {} if spec is None else {"speculative_config": parse_speculative_config(spec)}
    eng = smollm2_engine(**kw)
    if spec is not None:
        eng.core.spec.switch.knee = 1e12  # all prompts in one batch, speculating throughout
    for i, ids in enumerate(prompts):
        eng.add_request(str(i), ids, GREEDY)
    tokens: dict[str, list[int]] = {}
    while eng.has_unfinished():
        for out in eng.step():
            tokens.setdefault(out.request_id, []).extend(out.token_ids)
    return tokens, eng


@pytest.mark.slow
def test_ngram_acceptance_on_the_grounded_prompts():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        prompts = grounded_prompts()
        assert len(prompts) >= 10
        plain, _ = generate(None, prompts)
        spec, eng = generate('{"method": "ngram", "num_speculative_tokens": 4}', prompts)
    finally:
        torch.set_num_threads(before)
    assert spec == plain
    s = eng.core.spec.stats
    assert s.num_accepted_tokens / s.num_draft_tokens >= 0.5, s.__dict__
    # A sequence's decode forward yields its accepted drafts + 1 token, so the forwards
    # each sequence took are its tokens minus its accepted drafts: well under its tokens.
    generated = sum(len(t) for t in spec.values())
    assert generated - s.num_accepted_tokens < 0.75 * generated, (generated, s.__dict__)
