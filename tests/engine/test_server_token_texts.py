"""Logprob entries carry each token's own bytes, partial UTF-8 included."""

from tokenizers import Tokenizer as Backend
from tokenizers import decoders, models, pre_tokenizers, trainers

from infleet.engine.messages import TokenLogprobs
from infleet.engine.server.responses import ChatFormat
from infleet.engine.server.token_texts import TokenTexts, byte_level_alphabet
from infleet.engine.tokenizer import Tokenizer
from tests.engine.tiny_models import build_tokenizer

TEXT = "Tokyo is 東京; foxes 🦊🦊 say naïve things."


def wrap(backend: Backend) -> Tokenizer:
    return Tokenizer(
        backend, bos_token=None, eos_token=None, eos_token_ids=set(), chat_template=None
    )


def test_byte_level_alphabet_covers_every_byte_once():
    table = byte_level_alphabet()
    assert sorted(table.values()) == list(range(256))
    assert table["Ġ"] == ord(" ") and table["a"] == ord("a")


def test_chat_logprob_bytes_are_the_tokens_own_bytes_not_the_replacement_chars():
    tok = wrap(build_tokenizer())  # byte-level BPE: the emoji split into byte tokens
    ids = tok.encode(TEXT, add_special_tokens=False)
    partial = [i for i in ids if "\ufffd" in tok.decode([i])]
    assert partial  # the hard case really occurs
    fmt = ChatFormat("m", TokenTexts(tok), want_logprobs=True)
    content = fmt.logprobs([TokenLogprobs(i, -0.5, 1, [i], [-0.5]) for i in ids])["content"]
    joined = b"".join(bytes(entry["bytes"]) for entry in content)
    assert joined == TEXT.encode()
    for entry in content:
        assert entry["top_logprobs"][0]["bytes"] == entry["bytes"]
        if entry["token"] == "\ufffd":
            assert entry["bytes"] != list("\ufffd".encode())


def test_byte_fallback_vocabularies_give_the_byte_of_a_hex_piece():
    backend = Backend(models.BPE(unk_token="<unk>", byte_fallback=True))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    )
    hex_pieces = [f"<0x{b:02X}>" for b in range(256)]
    backend.train_from_iterator(
        ["hello world"] * 3,
        trainers.BpeTrainer(special_tokens=["<unk>", *hex_pieces]),
    )
    texts = TokenTexts(wrap(backend))
    fox = "🦊".encode()
    ids = [backend.token_to_id(f"<0x{b:02X}>") for b in fox]
    assert all(texts(i) == "\ufffd" for i in ids)
    assert b"".join(texts.bytes(i) for i in ids) == fox
    assert texts.bytes(backend.token_to_id("▁hello")) == b" hello"
