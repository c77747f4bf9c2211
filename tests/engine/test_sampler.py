"""The batched sampler: greedy, filters, penalties, logits processors, logprobs, seeded
draws independent of the batch, and a dispatched-op count independent of the batch size."""

import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from infleet.engine.core.logits_processors import new_bitmask
from infleet.engine.core.sampler import SampleFlags, sample
from infleet.engine.core.sampling_state import SamplingState
from infleet.engine.messages import SamplingParams

VOCAB = 32
CPU = torch.device("cpu")


class Rows:
    """A persistent batch with one slot per row: sample() over all of them, step by step."""

    def __init__(self, *rows: tuple[SamplingParams, list[int], list[int]], seeds=None):
        self.params = [p for p, _, _ in rows]
        self.state = SamplingState(len(rows), VOCAB, CPU)
        for slot, (p, prompt, output) in enumerate(rows):
            seed = seeds[slot] if seeds else (p.seed if p.seed is not None else 1000 + slot)
            self.state.write_slot(slot, p, seed, prompt, output, stop_ids=[0])
        self.slots = torch.arange(len(rows))

    def sample(self, logits: torch.Tensor, bitmask=None, order=None):
        slots = self.slots if order is None else torch.tensor(order)
        params = [self.params[i] for i in slots.tolist()]
        flags = SampleFlags.of(params, VOCAB)
        return sample(logits.clone(), slots, self.state, flags, bitmask)


def row(prompt=(1, 2, 3), output=(), **params) -> tuple[SamplingParams, list[int], list[int]]:
    return SamplingParams(**params), list(prompt), list(output)


def logits_for(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def test_greedy_is_argmax():
    logits = torch.randn(4, VOCAB, generator=torch.Generator().manual_seed(0))
    tokens = Rows(*[row(temperature=0.0) for _ in range(4)]).sample(logits).tokens
    assert tokens.tolist() == logits.argmax(-1).tolist()


def test_seeded_tokens_do_not_depend_on_the_batch():
    gen = torch.Generator().manual_seed(1)
    mine = torch.randn(VOCAB, generator=gen)
    others = torch.randn(6, VOCAB, generator=gen)

    def draw(neighbours: int, my_row: int, seed=1234, steps=12) -> list[int]:
        me = row(seed=seed, temperature=0.9, top_p=0.95, top_k=20)
        rows = [row(temperature=1.0, top_k=5, presence_penalty=0.3) for _ in range(neighbours)]
        rows.insert(my_row, me)
        batch = Rows(*rows, seeds=[seed if i == my_row else 77 + i for i in range(len(rows))])
        out = []
        for _ in range(steps):
            logits = list(others[:neighbours])
            logits.insert(my_row, mine)
            out.append(batch.sample(torch.stack(logits)).tokens[my_row].item())
        return out

    alone = draw(0, 0)
    assert alone == draw(6, 3) == draw(2, 2)
    assert len(set(alone)) > 1  # really sampling, not greedy
    assert draw(6, 3, seed=99) != alone


def test_a_row_without_top_k_or_top_p_draws_the_same_beside_one_with():
    """A plain temperature row draws in vocabulary order; a neighbour with top-k makes the
    batch sort, which must not move the plain row's draw (speculative verification samples
    changing subsets of a batch and relies on this)."""
    gen = torch.Generator().manual_seed(2)
    mine, other = torch.randn(VOCAB, generator=gen), torch.randn(VOCAB, generator=gen)

    def draw(with_neighbour: bool) -> list[int]:
        rows = [row(temperature=1.0, min_p=0.01)]
        if with_neighbour:
            rows.append(row(temperature=1.0, top_k=5))
        batch = Rows(*rows, seeds=[4321, 1])
        logits = torch.stack([mine, other][: len(rows)])
        return [batch.sample(logits).tokens[0].item() for _ in range(16)]

    alone = draw(False)
    assert draw(True) == alone
    assert len(set(alone)) > 1


def test_temperature_sampling_follows_the_distribution():
    probs = torch.tensor([0.5, 0.3, 0.2] + [0.0] * (VOCAB - 3))
    logits = probs.clamp_min(1e-30).log().expand(4000, VOCAB).contiguous()
    tokens = Rows(*[row(temperature=1.0) for _ in range(4000)]).sample(logits).tokens
    freq = torch.bincount(tokens, minlength=VOCAB).float() / 4000
    assert torch.allclose(freq[:3], probs[:3], atol=0.04) and freq[3:].sum() == 0


@pytest.mark.parametrize("with_top_k", [False, True])
def test_top_k_top_p_min_p_filter_the_tail(with_top_k):
    probs = [0.4, 0.3, 0.2, 0.1] + [1e-9] * (VOCAB - 4)
    logits = torch.tensor([probs]).log().expand(2000, VOCAB).contiguous()
    # A top-k of 8 in every row: the draw runs over the top-k candidates, no sort.
    extra = {"top_k": 8} if with_top_k else {}

    def drawn(**kw) -> list[bool]:
        rows = Rows(*[row(**{**extra, **kw}) for _ in range(2000)])
        tokens = rows.sample(logits).tokens
        return (torch.bincount(tokens, minlength=VOCAB)[:4] > 0).tolist()

    assert drawn(top_k=2) == [True, True, False, False]
    assert drawn(top_p=0.65) == [True, True, False, False]
    assert drawn(top_p=0.05) == [True, False, False, False]
    assert drawn(min_p=0.6) == [True, True, False, False]  # 0.3 >= 0.6 * 0.4
    assert drawn() == [True] * 4
    assert drawn(temperature=0.01) == [True, False, False, False]


def test_penalties_push_away_repeated_tokens():
    base = [0.0] * VOCAB
    base[5], base[6] = 2.0, 1.9
    greedy = dict(temperature=0.0)

    def first(*rows) -> list[int]:
        return Rows(*rows).sample(logits_for(*[base] * len(rows))).tokens.tolist()

    assert first(row(output=(5,), **greedy)) == [5]
    assert first(row(output=(5,), presence_penalty=0.5, **greedy)) == [6]
    assert first(row(output=(6, 5, 5), frequency_penalty=0.2, **greedy)) == [6]
    # Repetition penalty also covers the prompt.
    assert first(row(prompt=(5,), repetition_penalty=1.2, **greedy)) == [6]
    # A row without penalties in the same batch is untouched.
    assert first(row(output=(5,), presence_penalty=1.0, **greedy), row(**greedy)) == [6, 5]


def test_token_counts_are_updated_in_place_by_each_sample():
    base = [0.0] * VOCAB
    base[5], base[6] = 2.0, 1.7
    rows = Rows(row(presence_penalty=0.2, frequency_penalty=0.2, temperature=0.0))
    # 5, then 6 (5 penalised 0.4), then 5 again (both penalised alike): counts follow.
    got = [rows.sample(logits_for(base)).tokens.item() for _ in range(3)]
    assert got == [5, 6, 5]
    assert rows.state.counts is not None and rows.state.counts[0, 5].item() == 2


def test_logit_bias_and_min_tokens():
    base = [0.0] * VOCAB
    base[0], base[4] = 3.0, 1.0  # token 0 is the stop token of these rows
    rows = Rows(
        row(temperature=0.0, logit_bias={4: 5.0}),
        row(temperature=0.0, min_tokens=2),
        row(temperature=0.0),
    )
    logits = logits_for(base, base, base)
    assert rows.sample(logits).tokens.tolist() == [4, 4, 0]
    assert rows.sample(logits).tokens.tolist() == [4, 4, 0]
    assert rows.sample(logits).tokens.tolist() == [4, 0, 0]  # min_tokens reached


def test_a_constraint_bitmask_allows_only_its_tokens():
    logits = torch.randn(2, VOCAB, generator=torch.Generator().manual_seed(4))
    bitmask = new_bitmask(2, VOCAB)
    bitmask[0] = 0
    bitmask[0, 0] = 1 << 7 | 1 << 9  # only tokens 7 and 9
    rows = Rows(row(temperature=0.0), row(temperature=1.0))
    for _ in range(5):
        tokens = rows.sample(logits, bitmask).tokens.tolist()
        assert tokens[0] == (7 if logits[0, 7] > logits[0, 9] else 9)


def test_logprobs_of_sampled_token_rank_and_top_alternatives():
    logits = torch.randn(2, VOCAB, generator=torch.Generator().manual_seed(3))
    res = Rows(row(temperature=0.0, logprobs=3), row(temperature=1.0, seed=3)).sample(logits)
    ref = torch.log_softmax(logits, -1)
    tokens = res.tokens.tolist()
    assert res.logprob is not None and res.rank is not None and res.top_ids is not None
    assert math.isclose(res.logprob[0].item(), ref[0, tokens[0]].item(), rel_tol=1e-6)
    assert res.top_ids[0].tolist() == ref[0].topk(3).indices.tolist()
    assert res.top_ids[0, 0].item() == tokens[0] and res.rank[0].item() == 1
    assert res.rank[1].item() == int((ref[1] > ref[1, tokens[1]]).sum()) + 1


class CountOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


def test_dispatched_ops_do_not_depend_on_the_batch_size():
    """Every feature on: penalties, bias, min_tokens, top-k/top-p/min-p, seeds, logprobs."""
    params = dict(
        temperature=0.8, top_k=10, top_p=0.9, min_p=0.01, seed=5, presence_penalty=0.2,
        frequency_penalty=0.1, repetition_penalty=1.1, logit_bias={3: 1.0}, min_tokens=3,
        logprobs=5,
    )  # fmt: skip
    counts = []
    for batch in (1, 256):
        rows = Rows(*[row(output=(4, 5), **params) for _ in range(batch)])
        logits = torch.randn(batch, VOCAB, generator=torch.Generator().manual_seed(batch))
        rows.sample(logits)  # the tables exist from here on (allocated on first use)
        with CountOps() as ops:
            rows.sample(logits)
        counts.append(ops.ops)
    assert counts[0] == counts[1]
    assert len(counts[0]) < 200  # a per-row loop would be thousands at 256
