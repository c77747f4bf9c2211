"""Sampler: greedy, filters, penalties, logprobs, and seeded draws independent of the batch."""

import math

import torch

from infleet.engine.core.sampler import Sampler, filtered_probs
from infleet.engine.core.sequence import Sequence
from infleet.engine.messages import SamplingParams

VOCAB = 32


def seq(prompt=(1, 2, 3), output=(), **params) -> Sequence:
    s = Sequence("r", list(prompt), SamplingParams(**params))
    s.token_ids += list(output)
    return s


def logits_for(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def test_greedy_is_argmax():
    logits = torch.randn(4, VOCAB, generator=torch.Generator().manual_seed(0))
    tokens, _ = Sampler()(logits, [seq(temperature=0.0) for _ in range(4)])
    assert tokens == logits.argmax(-1).tolist()


def test_seeded_tokens_do_not_depend_on_the_batch():
    gen = torch.Generator().manual_seed(1)
    mine = torch.randn(VOCAB, generator=gen)
    others = torch.randn(6, VOCAB, generator=gen)
    sampler = Sampler()

    def draw(batch_rows: torch.Tensor, my_row: int, seed=1234, steps=12) -> list[int]:
        me = seq(seed=seed, temperature=0.9, top_p=0.95)
        neighbours = [seq(seed=None, temperature=1.0) for _ in range(len(batch_rows))]
        out = []
        for _ in range(steps):
            rows = list(batch_rows)
            rows.insert(my_row, mine)
            batch = [*neighbours[:my_row], me, *neighbours[my_row:]]
            tokens, _ = sampler(torch.stack(rows), batch)
            me.token_ids.append(tokens[my_row])
            out.append(tokens[my_row])
        return out

    alone = draw(others[:0], 0)
    assert alone == draw(others, 3) == draw(others[:2], 2)
    assert len(set(alone)) > 1  # really sampling, not greedy
    assert draw(others, 3, seed=99) != alone


def test_temperature_sampling_follows_the_distribution():
    probs = torch.tensor([0.5, 0.3, 0.2] + [0.0] * (VOCAB - 3))
    logits = probs.clamp_min(1e-30).log().expand(4000, VOCAB).contiguous()
    tokens, _ = Sampler()(logits, [seq(temperature=1.0) for _ in range(4000)])
    freq = torch.bincount(torch.tensor(tokens), minlength=VOCAB).float() / 4000
    assert torch.allclose(freq[:3], probs[:3], atol=0.04) and freq[3:].sum() == 0


def test_top_k_top_p_min_p_filter_the_tail():
    logits = torch.log(torch.tensor([[0.4, 0.3, 0.2, 0.1]]))
    keep = lambda **kw: (filtered_probs(logits, [SamplingParams(**kw)])[0] > 0).tolist()  # noqa: E731
    assert keep(top_k=2) == [True, True, False, False]
    assert keep(top_p=0.65) == [True, True, False, False]
    assert keep(top_p=0.05) == [True, False, False, False]
    assert keep(min_p=0.6) == [True, True, False, False]  # 0.3 >= 0.6 * 0.4
    assert keep() == [True] * 4
    hot = filtered_probs(logits, [SamplingParams(temperature=0.01)])[0]
    assert hot[0] > 0.999


def test_penalties_push_away_repeated_tokens():
    base = [0.0] * VOCAB
    base[5], base[6] = 2.0, 1.9
    sampler = Sampler()
    greedy = dict(temperature=0.0)
    assert sampler(logits_for(base), [seq(output=(5,), **greedy)])[0] == [5]
    assert sampler(logits_for(base), [seq(output=(5,), presence_penalty=0.5, **greedy)])[0] == [6]
    assert sampler(logits_for(base), [seq(output=(6, 5, 5), frequency_penalty=0.2, **greedy)])[
        0
    ] == [6]
    # Repetition penalty also covers the prompt.
    assert sampler(logits_for(base), [seq(prompt=(5,), repetition_penalty=1.2, **greedy)])[0] == [6]
    # A row without penalties in the same batch is untouched.
    tokens, _ = sampler(
        logits_for(base, base), [seq(output=(5,), presence_penalty=1.0, **greedy), seq(**greedy)]
    )
    assert tokens == [6, 5]


def test_logprobs_of_sampled_token_and_top_alternatives():
    logits = torch.randn(2, VOCAB, generator=torch.Generator().manual_seed(3))
    tokens, lps = Sampler()(logits, [seq(temperature=0.0, logprobs=3), seq(temperature=0.0)])
    ref = torch.log_softmax(logits[0], -1)
    assert lps[1] is None and lps[0] is not None
    assert lps[0].token_id == tokens[0]
    assert math.isclose(lps[0].logprob, ref[tokens[0]].item(), rel_tol=1e-6)
    assert [t for t, _ in lps[0].top] == ref.topk(3).indices.tolist()
    assert lps[0].top[0][0] == tokens[0]
    _, only = Sampler()(logits[:1], [seq(temperature=0.0, logprobs=0)])
    assert only[0] is not None and only[0].top == []
