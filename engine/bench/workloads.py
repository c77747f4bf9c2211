"""Benchmark workloads: named recipes for a seeded list of (prompt ids, output length).

A workload is a function of the CLI options, the model's vocabulary and a seeded RNG.
Prompts are random token ids (the model's text quality is not what is measured) and every
request generates exactly its output length (EOS is ignored), so both engines do the
same work. Add a workload by adding a function to WORKLOADS.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(slots=True)
class BenchRequest:
    prompt_token_ids: list[int]
    output_len: int


def parse_range(text: str) -> tuple[int, int]:
    """'32:512' -> (32, 512); '128' -> (128, 128)."""
    lo, _, hi = text.partition(":")
    try:
        bounds = (int(lo), int(hi or lo))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or LO:HI, got {text!r}") from None
    if not 1 <= bounds[0] <= bounds[1]:
        raise argparse.ArgumentTypeError(f"need 1 <= LO <= HI, got {text!r}")
    return bounds


def _random_prompt(rng: random.Random, length: int, vocab: Sequence[int]) -> list[int]:
    return [rng.choice(vocab) for _ in range(length)]


def mixed(opts: argparse.Namespace, vocab: Sequence[int], rng: random.Random) -> list[BenchRequest]:
    """Input and output lengths drawn uniformly from their ranges: the shape of chat
    traffic, where static batching pads every prompt to the longest and keeps every row
    decoding until the longest answer is done."""
    (ilo, ihi), (olo, ohi) = opts.input_len, opts.output_len
    return [
        BenchRequest(_random_prompt(rng, rng.randint(ilo, ihi), vocab), rng.randint(olo, ohi))
        for _ in range(opts.num_prompts)
    ]


def fixed(opts: argparse.Namespace, vocab: Sequence[int], rng: random.Random) -> list[BenchRequest]:
    """Every request at the top of both ranges: static batching's best case."""
    ilen, olen = opts.input_len[1], opts.output_len[1]
    return [BenchRequest(_random_prompt(rng, ilen, vocab), olen) for _ in range(opts.num_prompts)]


WORKLOADS: dict[
    str, Callable[[argparse.Namespace, Sequence[int], random.Random], list[BenchRequest]]
] = {
    "mixed": mixed,
    "fixed": fixed,
}
