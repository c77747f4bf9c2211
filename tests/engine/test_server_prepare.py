"""Request bodies -> prompt ids and sampling params, with generation_config.json defaults."""

import json

import pytest

from infleet.engine.errors import InvalidRequest
from infleet.engine.server.errors import ApiError
from infleet.engine.server.generation_config import generation_defaults, read_generation_defaults
from infleet.engine.server.prepare import ServedModel, prepare_chat, prepare_completion
from infleet.engine.tokenizer import Tokenizer
from tests.engine.tiny_models import CHAT_TEMPLATE, build_tokenizer


def served(defaults=None, max_model_len=256, num_blocks=16) -> ServedModel:
    tok = Tokenizer(
        build_tokenizer(),
        bos_token="<s>",
        eos_token="</s>",
        eos_token_ids=set(),
        chat_template=CHAT_TEMPLATE,
    )
    return ServedModel(
        "tiny",
        "/models/tiny",
        max_model_len,
        512,
        tok,
        defaults or {},
        num_blocks=num_blocks,
        max_num_seqs=4,
    )


def body(**fields) -> bytes:
    return json.dumps({"model": "tiny", **fields}).encode()


def test_generation_config_file_sets_defaults_the_request_overrides(tmp_path):
    (tmp_path / "generation_config.json").write_text(
        json.dumps(
            {
                "do_sample": True,
                "temperature": 0.6,
                "top_p": 0.9,
                "top_k": 20,
                "repetition_penalty": 1.1,
                "max_new_tokens": 40,
                "eos_token_id": [2, 3],
            }
        )
    )
    defaults = read_generation_defaults(str(tmp_path), "auto")
    assert defaults == {
        "temperature": 0.6,
        "top_p": 0.9,
        "top_k": 20,
        "repetition_penalty": 1.1,
        "max_tokens": 40,
    }
    assert read_generation_defaults(str(tmp_path), "vllm") == {}
    assert read_generation_defaults(str(tmp_path), "none") == {}
    assert read_generation_defaults("builtin:smollm2-135m-instruct", "auto") == {}
    model = served(defaults)
    p = prepare_completion(model, body(prompt="The quick brown fox")).params
    assert (p.temperature, p.top_p, p.top_k, p.repetition_penalty) == (0.6, 0.9, 20, 1.1)
    assert p.max_tokens == 40 and p.min_p == 0.0
    p = prepare_completion(model, body(prompt="The quick", temperature=0, top_k=-1)).params
    assert (p.temperature, p.top_k, p.top_p) == (0.0, 0, 0.9)
    chat = prepare_chat(model, body(messages=[{"role": "user", "content": "hi"}]))
    assert chat.params.max_tokens == 40  # the model's cap, under what the context leaves
    plain = prepare_chat(served(), body(messages=[{"role": "user", "content": "hi"}]))
    assert plain.params.temperature == 1.0
    assert plain.params.max_tokens == 256 - len(plain.prompts[0])


def test_generation_defaults_ignore_other_keys_and_non_numbers():
    assert generation_defaults({"temperature": "hot", "do_sample": True, "top_k": 5}) == {
        "top_k": 5
    }


def test_bad_bodies_are_400s_naming_the_field():
    model = served()
    with pytest.raises(ApiError) as err:
        prepare_completion(model, b"{not json")
    assert err.value.status == 400
    with pytest.raises(ApiError) as err:
        prepare_completion(model, json.dumps({"model": "other", "prompt": "x"}).encode())
    assert err.value.status == 404
    with pytest.raises(InvalidRequest) as bad:
        prepare_completion(model, body(prompt="x", stop=["y" * 300]))
    assert bad.value.param == "stop"
    with pytest.raises(InvalidRequest) as bad:
        prepare_completion(model, body(prompt="x", stop=["y"] * 17))
    assert bad.value.param == "stop"
    with pytest.raises(InvalidRequest) as bad:
        prepare_completion(model, body(prompt=[1, 512]))
    assert bad.value.param == "prompt" and "[0, 512)" in str(bad.value)
    with pytest.raises(InvalidRequest) as bad:
        prepare_completion(model, body(prompt=[1, 2], max_tokens=255))
    assert bad.value.param == "max_tokens" and "257 in total" in str(bad.value)
    with pytest.raises(InvalidRequest) as bad:  # fits the context, never a 10-block pool
        prepare_completion(served(num_blocks=10), body(prompt=[1, 2], max_tokens=200))
    assert bad.value.param == "max_tokens"
    assert "needs 13 KV cache blocks" in str(bad.value) and "the KV cache has 10" in str(bad.value)
    with pytest.raises(InvalidRequest) as bad:
        prepare_completion(model, body(prompt=[1, 2], n=5))
    assert bad.value.param == "n"
