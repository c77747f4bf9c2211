"""Incremental detokenization and stop strings, with real tokenizers."""

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from infleet.engine.errors import InvalidRequest
from infleet.engine.server.detokenizer import (
    MAX_STOP_LENGTH,
    MAX_STOP_STRINGS,
    IncrementalDetokenizer,
    StopStringFilter,
    check_stop_strings,
)
from tests.engine.tiny_models import build_tokenizer

TEXT = "Tokyo is 東京; foxes 🦊🦊 say naïve things, émigrés 👩‍👩‍👧 too."


def stream(tok, ids, prompt=()):
    detok = IncrementalDetokenizer(tok, list(prompt))
    deltas = [detok.add(i) for i in ids]
    deltas.append(detok.flush())
    return deltas


def test_multibyte_characters_split_over_tokens_never_emit_replacement_chars():
    tok = build_tokenizer()  # byte-level BPE: the emoji are unseen, so they split into bytes
    ids = tok.encode(TEXT, add_special_tokens=False).ids
    assert any("\ufffd" in tok.decode([i]) for i in ids)  # the hard case really occurs
    deltas = stream(tok, ids, prompt=tok.encode("Hello", add_special_tokens=False).ids)
    assert "".join(deltas) == TEXT
    assert not any("\ufffd" in d for d in deltas)


def test_word_start_spaces_survive_token_by_token_decoding():
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(
        ["hello world of tokens", "the world says hello"] * 3,
        trainers.BpeTrainer(special_tokens=["<unk>"]),
    )
    ids = tok.encode("hello world says the tokens").ids
    assert not tok.decode(ids[1:2]).startswith(" ")  # decoded alone, "▁world" loses its space
    prompt = tok.encode("the world").ids
    text = "".join(stream(tok, ids, prompt))
    assert text == tok.decode(prompt + ids)[len(tok.decode(prompt)) :]


def test_genuinely_invalid_utf8_is_flushed_at_the_end():
    tok = build_tokenizer()
    ids = tok.encode("🦊", add_special_tokens=False).ids
    deltas = stream(tok, ids[:-1])  # the character never completes
    assert deltas[:-1] == [""] * (len(ids) - 1) and deltas[-1].endswith("\ufffd")


def feed(stops, deltas, finish_after=None):
    f = StopStringFilter(tuple(stops))
    sent = []
    for d in deltas:
        if f.add(d):
            break
        sent.append(f.take(finished=False))
    sent.append(f.take(finished=True))
    return f, sent


def test_stop_string_spanning_tokens_is_cut_and_never_streamed():
    f, sent = feed(["END"], ["foo E", "N", "D and more"])
    assert f.stopped and f.text == "foo " and "".join(sent) == "foo "
    assert not any("E" in s for s in sent)


def test_partial_stop_is_held_back_then_released():
    f, sent = feed(["cd"], ["ab", "c", "e"])
    assert not f.stopped and sent == ["ab", "", "ce", ""]
    f, sent = feed(["x", "later"], ["ab late", "r"])
    assert f.stopped and f.text == "ab " and "".join(sent) == "ab "


def test_earliest_of_several_stops_wins():
    f, _ = feed(["world", "lo"], ["hello world"])
    assert f.text == "hel"


class CountingDecoder:
    """A real tokenizer that counts its decode calls."""

    def __init__(self, tok):
        self.tok, self.calls = tok, 0

    def decode(self, ids, skip_special_tokens=True):
        self.calls += 1
        return self.tok.decode(ids, skip_special_tokens=skip_special_tokens)


def test_one_decode_per_new_token_over_a_long_output():
    tok = build_tokenizer()
    ids = tok.encode(TEXT * 8, add_special_tokens=False).ids
    counting = CountingDecoder(tok)
    detok = IncrementalDetokenizer(counting, tok.encode("Hello", add_special_tokens=False).ids)
    start = counting.calls
    text = "".join(detok.add(i) for i in ids) + detok.flush()
    assert text == TEXT * 8
    # One decode per token, plus one per window slide (every 24 tokens) and the flush.
    assert counting.calls - start <= len(ids) + len(ids) // 24 + 2


def test_stop_string_limits_are_a_400_naming_stop():
    check_stop_strings(("a",) * (MAX_STOP_STRINGS - 1) + ("x" * MAX_STOP_LENGTH,))
    with pytest.raises(InvalidRequest) as err:
        check_stop_strings(("a",) * (MAX_STOP_STRINGS + 1))
    assert err.value.param == "stop"
    with pytest.raises(InvalidRequest) as err:
        check_stop_strings(("x" * (MAX_STOP_LENGTH + 1),))
    assert err.value.param == "stop" and str(MAX_STOP_LENGTH) in str(err.value)


def test_hold_back_is_the_longest_unsent_prefix_of_a_stop():
    f = StopStringFilter(("abcabd",))
    f.add("xxabcab")
    assert f.take(finished=False) == "xx"  # "abcab" could still become "abcabd"
    f.add("c")
    assert f.take(finished=False) == "abc"  # "abcabc": only "abc" may still start it
    f.add("abd")
    assert f.stopped and f.text == "xxabc" and f.take(finished=True) == ""
