"""The GPU benchmark workloads, as plain lists of requests (pure, seeded).

- decode: one request, batch 1, for tok/s against the memory roofline;
- offline-mixed: 256 prompts, input and output lengths uniform in [100, 1024]
  (nano-vllm's workload); offline-fixed: 1000 prompts of 256 in / 256 out (vLLM's
  published H100 figure for Llama-3-8B is 12.7k total tok/s on it);
- online: requests arriving as a Poisson process at each rate of a sweep.
Every request runs to exactly its output length (EOS ignored) on both engines.
`tiny` scales shrink counts and lengths so the same code runs on a CPU in seconds.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(slots=True)
class Request:
    prompt: list[int]
    max_tokens: int
    arrival: float = 0.0  # seconds after the run starts


@dataclass(slots=True, frozen=True)
class Scale:
    decode_prompt: int
    decode_tokens: int
    mixed_count: int
    mixed_range: tuple[int, int]
    fixed_count: int
    fixed_len: int
    online_count: int
    online_range: tuple[int, int]
    online_rates: tuple[float, ...]


SCALES = {
    "full": Scale(
        decode_prompt=512, decode_tokens=256, mixed_count=256, mixed_range=(100, 1024),
        fixed_count=1000, fixed_len=256, online_count=200, online_range=(100, 1024),
        online_rates=(2.0, 4.0, 8.0, 16.0),
    ),
    "tiny": Scale(
        decode_prompt=8, decode_tokens=4, mixed_count=4, mixed_range=(4, 12),
        fixed_count=4, fixed_len=4, online_count=4, online_range=(4, 8),
        online_rates=(20.0, 200.0),
    ),
}  # fmt: skip


def _prompt(rng: random.Random, length: int, vocab: int) -> list[int]:
    return [rng.randrange(vocab) for _ in range(length)]


def uniform_requests(count: int, lengths: tuple[int, int], vocab: int, seed: int) -> list[Request]:
    """Input and output lengths each uniform in `lengths` (inclusive)."""
    rng = random.Random(seed)
    return [
        Request(_prompt(rng, rng.randint(*lengths), vocab), rng.randint(*lengths))
        for _ in range(count)
    ]


def fixed_requests(count: int, length: int, vocab: int, seed: int) -> list[Request]:
    rng = random.Random(seed)
    return [Request(_prompt(rng, length, vocab), length) for _ in range(count)]


def poisson_arrivals(requests: list[Request], rate: float, seed: int) -> list[Request]:
    """Copies of `requests` arriving with exponential gaps of mean 1/rate seconds."""
    rng = random.Random(seed)
    now, out = 0.0, []
    for r in requests:
        now += rng.expovariate(rate)
        out.append(Request(r.prompt, r.max_tokens, now))
    return out


def workloads(scale: Scale, vocab: int, seed: int = 0) -> dict[str, list[Request]]:
    """The offline workloads by name (online ones are built per rate)."""
    return {
        "offline-mixed": uniform_requests(scale.mixed_count, scale.mixed_range, vocab, seed),
        "offline-fixed": fixed_requests(scale.fixed_count, scale.fixed_len, vocab, seed + 1),
    }


def online_requests(scale: Scale, vocab: int, rate: float, seed: int = 0) -> list[Request]:
    base = uniform_requests(scale.online_count, scale.online_range, vocab, seed + 2)
    return poisson_arrivals(base, rate, seed + 3)
