"""Speculative decoding never changes what the model says (engine/spec/), on a tiny random
Llama in fp32: greedy and seeded tokens are the same with ngram, draft-model and
self-draft speculation as without, in a busy mixed batch with chunked prefill, under
preemption, with prefix-cache hits; a seeded sample's distribution is the target's; the
target as its own draft is always accepted; the load switch turns off at a large batch."""

import json
import math
import random
import shutil
from collections import Counter, defaultdict

import pytest
import torch

from infleet.engine.args import EngineArgs
from infleet.engine.llm_engine import LLMEngine
from infleet.engine.loader import load_model
from infleet.engine.messages import SamplingParams
from infleet.engine.spec.config import SpeculativeConfigError, parse_speculative_config
from tests.engine.tiny_models import VOCAB_SIZE, build_checkpoint

GREEDY = SamplingParams(max_tokens=24, temperature=0.0, ignore_eos=True)
SEEDED = SamplingParams(
    max_tokens=24, temperature=1.0, top_p=0.9, top_k=50, min_p=0.01, repetition_penalty=1.1,
    presence_penalty=0.3, frequency_penalty=0.2, seed=5, ignore_eos=True,
)  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return build_checkpoint(tmp_path_factory.mktemp("tiny-llama"), "llama", seed=3)


@pytest.fixture(scope="module")
def tiny(tiny_path):
    return load_model(str(tiny_path), device="cpu", dtype="float32")


def spec_config(method: str, tiny_path) -> dict:
    return {
        "ngram": {"method": "ngram", "num_speculative_tokens": 4, "prompt_lookup_min": 1},
        "draft_model": {"method": "draft_model", "model": str(tiny_path), "num_speculative_tokens": 3},
        "self_draft": {"method": "self_draft", "num_layers": 1, "num_speculative_tokens": 3},
    }[method]  # fmt: skip


def engine(tiny, spec: dict | None = None, always: bool = True, **kw) -> LLMEngine:
    args = dict(model="tiny", block_size=4, num_kv_blocks=512, max_num_batched_tokens=2048)
    args.update(kw)
    if spec is not None:
        args["speculative_config"] = parse_speculative_config(json.dumps(spec))
    eng = LLMEngine(EngineArgs(**args), tiny)
    if spec is not None and always:
        # Speculate at any batch size: these tests are about exactness, not the cost model.
        eng.core.spec.switch.knee = 1e12
        eng.core.spec.switch.draft_cost = 0.0
    return eng


def prompt(seed: int, n: int) -> list[int]:
    rng = random.Random(seed)
    motif = [rng.randrange(3, VOCAB_SIZE) for _ in range(6)]
    # Half repeats: the n-gram proposer finds matches in the prompt as well as the output.
    return (motif * n)[: n // 2] + [rng.randrange(3, VOCAB_SIZE) for _ in range(n - n // 2)]


def drive(eng: LLMEngine, arrivals: dict[int, list]) -> dict[str, list[int]]:
    tokens: dict[str, list[int]] = defaultdict(list)
    step = 0
    while eng.has_unfinished() or step <= max(arrivals):
        for rid, ids, params in arrivals.get(step, []):
            eng.add_request(rid, ids, params)
        for out in eng.step():
            assert out.error is None
            key = out.request_id if out.index == 0 else f"{out.request_id}/{out.index}"
            tokens[key] += out.token_ids
        step += 1
    return dict(tokens)


def busy_traffic(seed: int) -> dict[int, list]:
    """A target (greedy and seeded) among mixed neighbours arriving over the first steps,
    one of which repeats the target's prompt (a prefix-cache hit)."""
    rng = random.Random(seed)
    arrivals: dict[int, list] = defaultdict(list)
    arrivals[0] += [("greedy", prompt(1, 37), GREEDY), ("seeded", prompt(2, 29), SEEDED)]
    arrivals[4].append(("again", prompt(1, 37), GREEDY))
    # n = 3 seeded choices: forked from one prefill, each speculating on its own.
    arrivals[2].append(("forks", prompt(3, 23), SamplingParams(**{**_fields(SEEDED), "n": 3})))
    for i in range(8):
        params = SamplingParams(
            max_tokens=rng.randrange(4, 32), temperature=rng.choice([0.0, 0.7, 1.2]),
            top_k=rng.choice([0, 20]), presence_penalty=rng.choice([0.0, 0.5]),
            seed=rng.randrange(1 << 20), ignore_eos=True,
        )  # fmt: skip
        arrivals[rng.randrange(0, 6)].append(
            (f"n{i}", prompt(100 + i, rng.randrange(3, 60)), params)
        )
    return arrivals


@pytest.fixture(scope="module")
def plain(tiny):
    """Every request's tokens without speculation: busy, and in a tiny KV pool."""
    return {
        "busy": drive(engine(tiny, max_num_batched_tokens=16), busy_traffic(7)),
        "tiny_pool": drive(
            engine(tiny, num_kv_blocks=32, max_num_batched_tokens=32), busy_traffic(11)
        ),
    }


@pytest.mark.parametrize("method", ["ngram", "draft_model", "self_draft"])
def test_identical_tokens_in_busy_mixed_batches_with_chunked_prefill(
    tiny, tiny_path, plain, method
):
    eng = engine(tiny, spec_config(method, tiny_path), max_num_batched_tokens=16)
    assert drive(eng, busy_traffic(7)) == plain["busy"]
    assert len(plain["busy"]["forks/2"]) == SEEDED.max_tokens
    stats = eng.core.spec.stats
    assert stats.num_draft_tokens > 0
    # A random model rarely repeats itself, so its n-gram drafts are rejected: ngram's
    # accepted drafts are checked on SmolLM2 (test_spec_smollm2.py).
    assert stats.num_accepted_tokens > 0 or method == "ngram"
    assert eng.block_manager.prefix_hits > 0


@pytest.mark.parametrize("method", ["ngram", "draft_model", "self_draft"])
def test_identical_tokens_under_preemption(tiny, tiny_path, plain, method):
    eng = engine(tiny, spec_config(method, tiny_path), num_kv_blocks=32, max_num_batched_tokens=32)
    assert drive(eng, busy_traffic(11)) == plain["tiny_pool"]
    assert eng.scheduler.num_preemptions > 0
    assert eng.core.spec.stats.num_accepted_tokens > 0 or method == "ngram"


def test_target_as_its_own_draft_is_always_accepted(tiny, tiny_path):
    eng = engine(tiny, spec_config("draft_model", tiny_path))
    tokens = drive(eng, {0: [(f"r{i}", prompt(i, 20 + i), GREEDY) for i in range(4)]})
    s = eng.core.spec.stats
    assert s.num_accepted_tokens / s.num_draft_tokens >= 0.95
    generated = sum(len(t) for t in tokens.values())
    # 4 x 24 tokens; each target forward verifies up to 3 drafts + 1 per sequence.
    assert s.num_target_forwards < generated / 4 / 2
    metrics = eng.metrics.render().decode()
    name = f'model_name="{eng.model_name}"'
    assert (
        f"infleet:spec_decode_num_accepted_tokens_total{{{name}}} {float(s.num_accepted_tokens)}"
        in metrics
    )
    assert (
        f"infleet:spec_decode_num_draft_tokens_total{{{name}}} {float(s.num_draft_tokens)}"
        in metrics
    )
    assert (
        f'infleet:spec_decode_num_accepted_tokens_per_pos_total{{{name},position="2"}}' in metrics
    )


def test_seeded_tokens_do_not_depend_on_speculation(tiny, tiny_path):
    """The same seeds give the same tokens with and without speculation, row by row: a draft
    is accepted only where it equals the target's own seeded sample."""
    reqs = [
        (f"s{i}", prompt(i % 5, 12), SamplingParams(**{**_fields(SEEDED), "seed": i, "max_tokens": 8}))
        for i in range(48)
    ]  # fmt: skip
    base = drive(engine(tiny, max_num_seqs=48), {0: reqs})
    spec = engine(tiny, spec_config("self_draft", tiny_path), max_num_seqs=48)
    assert drive(spec, {0: reqs}) == base
    assert spec.core.spec.stats.num_accepted_tokens > 0


def _fields(p: SamplingParams) -> dict:
    return {f: getattr(p, f) for f in p.__struct_fields__}


def test_sampled_distribution_is_the_targets(tiny, tiny_path):
    """Temperature 1, top-p 0.9: 3000 seeded draws with a 1-layer self-draft against 3000
    draws (other seeds) without speculation. The 3rd generated token of each (drafts decided
    it: the first is never speculated) is compared by a chi-square homogeneity test over
    the categories with >= 10 draws in both runs pooled (the rest form one category).
    Threshold: the 0.999 quantile of chi-square with the test's degrees of freedom, so a
    correct engine fails with probability 0.1% over the choice of seeds (fixed here, so
    the test is deterministic)."""
    n = 3000
    ids = prompt(3, 10)
    params = SamplingParams(max_tokens=3, temperature=1.0, top_p=0.9, ignore_eos=True)

    def draws(eng: LLMEngine, first_seed: int) -> Counter:
        reqs = [(f"d{i}", ids, SamplingParams(**{**_fields(params), "seed": first_seed + i}))
                for i in range(n)]  # fmt: skip
        return Counter(t[2] for t in drive(eng, {0: reqs}).values())

    base = draws(engine(tiny, max_num_seqs=256), 0)
    spec_eng = engine(tiny, spec_config("self_draft", tiny_path), max_num_seqs=256)
    spec = draws(spec_eng, 10**6)
    s = spec_eng.core.spec.stats
    assert s.num_draft_tokens > 1000 and 0 < s.num_accepted_tokens < s.num_draft_tokens
    common = [t for t in base if base[t] + spec[t] >= 10]
    rows = [(base[t], spec[t]) for t in common]
    rows.append((n - sum(a for a, _ in rows), n - sum(b for _, b in rows)))
    rows = [r for r in rows if sum(r) > 0]
    chi2 = 0.0
    for a, b in rows:
        expected = (a + b) / 2  # equal sample sizes
        chi2 += (a - expected) ** 2 / expected + (b - expected) ** 2 / expected
    dof = len(rows) - 1
    assert dof >= 5
    assert chi2 < _chi2_quantile_999(dof), (chi2, dof, rows)
    # And the test can fail: the draft model's own greedy token is far from the target's
    # distribution (a broken verifier that accepted every draft would produce it).
    skewed = Counter({t: c for t, c in base.items()})
    skewed[max(base, key=base.get)] += n // 3
    assert _chi2(base, skewed, n) > _chi2_quantile_999(dof)


def _chi2(a: Counter, b: Counter, n: int) -> float:
    total = 0.0
    for t in set(a) | set(b):
        if a[t] + b[t] >= 10:
            e = (a[t] + b[t]) / 2
            total += (a[t] - e) ** 2 / e + (b[t] - e) ** 2 / e
    return total


def _chi2_quantile_999(dof: int) -> float:
    """Wilson-Hilferty approximation of the chi-square 0.999 quantile (z = 3.0902)."""
    z = 3.0902
    return dof * (1 - 2 / (9 * dof) + z * math.sqrt(2 / (9 * dof))) ** 3


def test_load_switch_off_at_a_large_batch_on_at_batch_one(tiny, tiny_path):
    """The cost model with the CPU's knee (engine/spec/switch.py): on for one sequence,
    off for 32; the gauge says which."""
    gauge = f'infleet:spec_decode_enabled{{model_name="{tiny_path.name}"}}'
    one = engine(tiny, spec_config("ngram", tiny_path), always=False)
    drive(one, {0: [("one", prompt(1, 37), GREEDY)]})
    assert one.core.spec.stats.num_draft_tokens > 0
    assert f"{gauge} 1.0" in one.metrics.render().decode()

    many = engine(tiny, spec_config("ngram", tiny_path), always=False)
    for i in range(32):
        many.add_request(f"m{i}", prompt(i, 37), GREEDY)
    for _ in range(8):  # the prefill step, then decodes of all 32
        many.step()
    assert many.scheduler.num_running == 32
    assert many.core.spec.stats.num_draft_tokens == 0
    assert f"{gauge} 0.0" in many.metrics.render().decode()


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"method": "medusa", "num_speculative_tokens": 2}, "speculative_config.method"),
        ({"method": "eagle", "num_speculative_tokens": 2}, "speculative_config.method"),
        ({"method": "ngram", "num_speculative_tokens": 17}, "speculative_config.num_speculative_tokens"),
        ({"method": "ngram"}, "speculative_config.num_speculative_tokens"),
        ({"method": "ngram", "num_speculative_tokens": 2, "lookahead": 1}, "speculative_config.lookahead"),
        ({"method": "draft_model", "num_speculative_tokens": 2}, "speculative_config.model"),
        ({"method": "self_draft", "num_speculative_tokens": 2}, "speculative_config.num_layers"),
        ({"method": "ngram", "num_speculative_tokens": 2, "prompt_lookup_min": 5}, "speculative_config.prompt_lookup_min"),
    ],
)  # fmt: skip
def test_bad_configs_are_refused_naming_the_field(config, field, capsys):
    with pytest.raises(SpeculativeConfigError, match=field.replace(".", r"\.")):
        parse_speculative_config(json.dumps(config))
    from infleet.engine.args import parse_args

    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--speculative-config", json.dumps(config)])
    assert exit_info.value.code == 2
    assert field in capsys.readouterr().err


def test_draft_with_another_tokenizer_is_refused(tiny, tiny_path, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(tiny_path, other)
    tok = json.loads((other / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    first = next(iter(vocab))
    vocab["zz" + first] = vocab.pop(first)
    (other / "tokenizer.json").write_text(json.dumps(tok))
    spec = {"method": "draft_model", "model": str(other), "num_speculative_tokens": 2}
    with pytest.raises(
        SpeculativeConfigError, match=r"speculative_config\.model: the draft model's tokenizer"
    ):
        engine(tiny, spec)


def test_self_draft_needs_fewer_layers_than_the_target(tiny):
    with pytest.raises(
        SpeculativeConfigError, match=r"speculative_config\.num_layers: must be below"
    ):
        engine(tiny, {"method": "self_draft", "num_layers": 2, "num_speculative_tokens": 2})


def test_self_draft_proposes_what_the_first_layers_alone_would(tiny, tiny_path, tmp_path):
    """self_draft with K layers and draft_model with a checkpoint of only the target's
    first K layers (same weights, same final norm and head) propose the same drafts, so
    their acceptance counts agree draft for draft."""
    from safetensors.torch import load_file, save_file

    first = tmp_path / "first-layer"
    shutil.copytree(tiny_path, first)
    weights = load_file(first / "model.safetensors")
    save_file(
        {k: v for k, v in weights.items() if not k.startswith("model.layers.1.")},
        first / "model.safetensors",
    )
    config = json.loads((first / "config.json").read_text())
    config["num_hidden_layers"] = 1
    (first / "config.json").write_text(json.dumps(config))
    reqs = {0: [(f"r{i}", prompt(i, 20 + i), GREEDY) for i in range(4)]}
    stats = []
    for spec in (
        {"method": "self_draft", "num_layers": 1, "num_speculative_tokens": 3},
        {"method": "draft_model", "model": str(first), "num_speculative_tokens": 3},
    ):
        eng = engine(tiny, spec)
        drive(eng, reqs)
        s = eng.core.spec.stats
        stats.append((s.num_draft_tokens, s.num_accepted_tokens, s.accepted_per_pos))
    assert stats[0] == stats[1]
    assert stats[0][1] > 0


def test_cost_model_picks_fewer_drafts_as_the_batch_grows():
    from infleet.engine.spec.switch import DEFAULT_KNEE, LoadSwitch, best_draft_len

    for knee in DEFAULT_KNEE.values():
        lens = [best_draft_len(b, 4, 0.7, knee) for b in (1, 2, 4, 8, 16, 32, 64, 128, 256)]
        assert lens[0] >= 2 and lens[-1] == 0
        assert lens == sorted(lens, reverse=True)
    switch = LoadSwitch(k=4, knee=DEFAULT_KNEE["cpu"])
    assert switch.decide(1) > 0
    # A draft that costs most of a target step does not pay at this acceptance.
    assert best_draft_len(1, 4, 0.6, DEFAULT_KNEE["cpu"], draft_cost=0.8) == 0
    for _ in range(200):  # every draft rejected: acceptance falls, speculation stops
        switch.observe(proposed=4, accepted=0)
    assert switch.acceptance < 0.05 and switch.decide(1) == 0
