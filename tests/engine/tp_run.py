"""Run prompts through the whole engine (LLMEngine: scheduler, chunked prefill,
preemption) in a fresh process: `python -m tests.engine.tp_run` with a JSON job on stdin,
JSON results on stdout. Tensor parallelism sets a process-wide place in the group, so the
TP=2 engine (rank 0 here, rank 1 its child) must not share the test process.

Job: {"args": EngineArgs fields, "prompts": [[ids]], "max_tokens": N}. Result:
{"tokens": [[ids]], "top2": [[[logprob, logprob] per token]], "preemptions": N,
"weight_bytes": this rank's parameter bytes, "in_flight": the most pipeline micro-batches
rank 0 had started and not yet finished, "trace": its start/done events}.
"""

from __future__ import annotations

import json
import logging
import sys

import torch


def main() -> int:
    from infleet.engine.args import EngineArgs
    from infleet.engine.llm_engine import LLMEngine
    from infleet.engine.messages import SamplingParams

    logging.basicConfig(level=logging.INFO)  # rank 0's lines on stderr, as a follower's
    torch.set_num_threads(1)
    job = json.load(sys.stdin)
    eng = LLMEngine(EngineArgs(**job["args"]))
    params = SamplingParams(
        max_tokens=job["max_tokens"], temperature=0.0, ignore_eos=True, logprobs=2
    )
    prompts = job["prompts"]
    for i, prompt in enumerate(prompts):
        eng.add_request(str(i), prompt, params)
    tokens: list[list[int]] = [[] for _ in prompts]
    top2: list[list[list[float]]] = [[] for _ in prompts]
    while eng.has_unfinished():
        for out in eng.step():
            assert out.error is None, out.error
            tokens[int(out.request_id)] += out.token_ids
            for lp in out.logprobs or []:
                top2[int(out.request_id)].append(sorted(lp.top_logprobs, reverse=True)[:2])
    model = eng.core.loaded.model
    result = {
        "tokens": tokens,
        "top2": top2,
        "preemptions": eng.core.stats().preemptions_total,
        "weight_bytes": sum(p.numel() * p.element_size() for p in model.parameters()),
        "in_flight": eng.core.runner.trace.max_in_flight,
        "trace": eng.core.runner.trace.events,
    }
    eng.core.shutdown()
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
