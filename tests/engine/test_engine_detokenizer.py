"""Incremental detokenization and stop strings, with real tokenizers."""

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from infleet.engine.detokenizer import IncrementalDetokenizer, StopStringFilter
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
