"""Multi-turn chat through the bundled engine with and without KV tiers, in one run.

C conversations x T turns; every conversation starts with one shared system prompt of S
tokens, and each turn adds U user tokens and A generated ones to its history. Turns go
round-robin over the conversations, K in flight at a time, so a returning conversation
finds its history evicted from the device pool (sized to 1/POOL_FRACTION of the working
set) by the others. Configurations, each on a fresh engine with the same weights:

- recompute: no tiers (a returning turn prefills what the device pool lost);
- dram: a DRAM tier holding the working set;
- dram+nvme: a DRAM tier of a quarter of the working set, an NVMe tier holding all of it.

Reports TTFT p50/p95 of returning turns (turn >= 1; arrival to first token, engine
queueing included), the first turns' TTFT, total throughput, the prompt tokens computed
and the tokens restored per tier. Greedy decoding: every configuration must produce the
same tokens (checked).

    .venv/bin/python bench/kv_tiers_chat.py --conversations 32 --turns 8 --system 1024
    # GPU (Llama-3.1-8B shape, the same workload at GPU scale):
    python bench/kv_tiers_chat.py --model /models/Llama-3.1-8B-Instruct --device cuda \\
        --conversations 32 --turns 8 --system 2048 --user 128 --answer 128 --in-flight 8 \\
        --nvme-dir /local-nvme/kvbench
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from infleet.engine.args import EngineArgs
from infleet.engine.llm_engine import LLMEngine
from infleet.engine.loader import load_model
from infleet.engine.messages import SamplingParams


@dataclass
class Workload:
    conversations: int
    turns: int
    system: int
    user: int
    answer: int
    in_flight: int
    seed: int = 0
    prompts: list[list[int]] = field(default_factory=list)  # per conversation: its history

    def tokens_per_conversation(self) -> int:
        return self.system + self.turns * (self.user + self.answer)

    def working_set_tokens(self) -> int:
        return self.system + self.conversations * self.turns * (self.user + self.answer)


def run(eng: LLMEngine, w: Workload, vocab: int) -> dict:
    rng = random.Random(w.seed)
    system = [rng.randrange(3, vocab) for _ in range(w.system)]
    history = [list(system) for _ in range(w.conversations)]
    order = [(t, c) for t in range(w.turns) for c in range(w.conversations)]
    user = {(t, c): [rng.randrange(3, vocab) for _ in range(w.user)] for t, c in order}
    params = SamplingParams(max_tokens=w.answer, temperature=0.0, ignore_eos=True)
    live: dict[str, tuple[int, int, float]] = {}  # request id -> turn, conversation, arrival
    ttft: dict[tuple[int, int], float] = {}
    answers: dict[tuple[int, int], list[int]] = {}
    start = time.perf_counter()
    i = 0
    while i < len(order) or live:
        while i < len(order) and len(live) < w.in_flight:
            t, c = order[i]
            history[c] += user[t, c]
            rid = f"c{c}t{t}"
            live[rid] = (t, c, time.perf_counter())
            answers[t, c] = []
            eng.add_request(rid, list(history[c]), params)
            i += 1
        for out in eng.step():
            assert out.error is None, out.error
            t, c, arrival = live[out.request_id]
            if out.token_ids and (t, c) not in ttft:
                ttft[t, c] = time.perf_counter() - arrival
            answers[t, c] += out.token_ids
            if out.finished:
                history[c] += answers[t, c]
                del live[out.request_id]
    wall = time.perf_counter() - start
    returning = [v for (t, _), v in ttft.items() if t > 0]
    first = [v for (t, _), v in ttft.items() if t == 0]
    eng.record_metrics()
    stats = eng.core.stats()
    generated = sum(len(a) for a in answers.values())
    return {
        "ttft_returning_p50_s": statistics.median(returning),
        "ttft_returning_p95_s": statistics.quantiles(returning, n=20)[-1],
        "ttft_first_p50_s": statistics.median(first),
        "wall_s": wall,
        "requests_per_s": len(order) / wall,
        "generated_tokens_per_s": generated / wall,
        "prompt_tokens_computed": stats.prompt_tokens_computed_total,
        "prefix_hit_tokens": stats.prefix_hits_total,
        "restored_tokens": stats.kv_restored_tokens_total,
        "preemptions": stats.preemptions_total,
        "answers": {f"{t}/{c}": a for (t, c), a in sorted(answers.items())},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="builtin:smollm2-135m-instruct")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--conversations", type=int, default=32)
    p.add_argument("--turns", type=int, default=8)
    p.add_argument("--system", type=int, default=1024, help="shared system prompt tokens")
    p.add_argument("--user", type=int, default=32, help="tokens each user turn adds")
    p.add_argument("--answer", type=int, default=16, help="tokens generated per turn")
    p.add_argument("--in-flight", type=int, default=4, help="turns in flight at once")
    p.add_argument("--pool-fraction", type=float, default=4.0, help="working set / device pool")
    p.add_argument("--block-size", type=int, default=16)
    p.add_argument("--nvme-dir", default=None, help="NVMe tier directory (default: a temp dir)")
    p.add_argument("--configs", nargs="+", default=["recompute", "dram", "dram+nvme"])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    w = Workload(a.conversations, a.turns, a.system, a.user, a.answer, a.in_flight)
    loaded = load_model(a.model, device=a.device, dtype=a.dtype)
    c = loaded.config
    bs = a.block_size
    kv_bytes = 2 * c.num_layers * c.num_kv_heads * c.head_dim * loaded.dtype.itemsize
    ws_blocks = -(-w.working_set_tokens() // bs)
    pool_blocks = max(int(ws_blocks / a.pool_fraction), -(-w.tokens_per_conversation() // bs) + 4)
    ws_bytes = ws_blocks * bs * kv_bytes
    base = dict(
        model=a.model, device=a.device, dtype=a.dtype, block_size=bs, num_kv_blocks=pool_blocks,
        max_num_seqs=max(a.in_flight, 4), enforce_eager=True,
    )  # fmt: skip
    nvme_dir = Path(a.nvme_dir or tempfile.mkdtemp(prefix="kvbench-"))
    tiers = {
        "recompute": {},
        "dram": {"kv_dram_size": int(ws_bytes * 1.25)},
        "dram+nvme": {
            "kv_dram_size": ws_bytes // 4,
            "kv_nvme_size": int(ws_bytes * 1.5),
            "kv_nvme_path": str(nvme_dir / "run"),
        },
    }
    results = {}
    for name in a.configs:
        eng = LLMEngine(EngineArgs(**base, **tiers[name]), loaded)
        results[name] = run(eng, w, c.vocab_size)
        if eng.core.tiers is not None:
            eng.record_metrics()
            text = eng.output.metrics.render().decode()
            results[name]["tier_hits"] = {
                tier: sum(
                    float(line.rsplit(" ", 1)[1])
                    for line in text.splitlines()
                    if line.startswith("infleet:kv_tier_hits_total") and f'tier="{tier}"' in line
                )
                for tier in ("dram", "nvme")
            }
        eng.core.shutdown()
        r = {k: v for k, v in results[name].items() if k != "answers"}
        print(name, json.dumps(r), flush=True)
    answers = [r.pop("answers") for r in results.values()]
    same = all(x == answers[0] for x in answers)
    for name, x in zip(results, answers, strict=True):
        results[name]["answers_differing_from_first"] = sum(
            x[k] != answers[0][k] for k in answers[0]
        )
    print("same tokens in every configuration:", same)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    report = {
        "workload": w.__dict__ | {"prompts": None},
        "pool_blocks": pool_blocks,
        "working_set_blocks": ws_blocks,
        "block_bytes": bs * kv_bytes,
        "same_tokens": same,
        "results": results,
        "machine": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "commit": commit.stdout.strip(),
        "date": time.strftime("%Y-%m-%d"),
    }
    if a.out:
        Path(a.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
