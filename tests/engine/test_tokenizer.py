"""Tokenizer files and chat templates: rendering matches transformers' apply_chat_template."""

from __future__ import annotations

import datetime
import json

import pytest
import tokenizers

from infleet.engine.tokenizer import ChatTemplateError, Tokenizer
from tests.engine.tiny_models import build_checkpoint

# Uses what real templates use: namespace, loop controls, loop.first, tojson, trim, bos/eos,
# raise_exception, extra kwargs (tools), add_generation_prompt.
TEMPLATE = """
{%- set ns = namespace(system='') -%}
{%- if tools %}<tools>{{ tools | tojson }}</tools>{% endif -%}
{%- for m in messages -%}
  {%- if m['role'] == 'system' -%}{%- set ns.system = m['content'] -%}{%- continue -%}{%- endif -%}
  {%- if m['role'] not in ['user', 'assistant'] -%}{{ raise_exception('unknown role ' + m['role']) }}{%- endif -%}
  {%- if loop.first %}{{ bos_token }}{% endif -%}
  <|{{ m['role'] }}|>{{ m['content'] | trim }}
  {%- if m.get('tool_calls') %} calls={{ m['tool_calls'] | tojson(indent=1) }}{% endif -%}
  {%- if m['role'] == 'assistant' %}{{ eos_token }}{% endif %}
{% if loop.index >= 6 %}{% break %}{% endif %}
{%- endfor -%}
{%- if ns.system %}[system: {{ ns.system }}]{% endif -%}
{%- if add_generation_prompt %}<|assistant|>{% endif -%}
"""
CONVERSATIONS = [
    [{"role": "user", "content": "  What is the capital of France?  "}],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Café?"},
        {
            "role": "assistant",
            "content": "Oui.",
            "tool_calls": [{"name": "f", "arguments": {"q": "東京"}}],
        },
        {"role": "user", "content": "Merci"},
    ],
    [{"role": "user", "content": str(i)} for i in range(9)],  # {% break %} after six
]
TOOLS = [{"type": "function", "function": {"name": "weather", "parameters": {"city": "Zürich"}}}]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """Our Tokenizer and transformers' AutoTokenizer over the same files and template."""
    import transformers

    path = build_checkpoint(tmp_path_factory.mktemp("tok"), "llama")
    (path / "chat_template.jinja").write_text(TEMPLATE)
    ours = Tokenizer.from_hf_dir(path, set())
    theirs = transformers.AutoTokenizer.from_pretrained(path)
    return ours, theirs, path


@pytest.mark.parametrize("generation_prompt", [True, False])
@pytest.mark.parametrize("conversation", range(len(CONVERSATIONS)))
def test_chat_template_renders_like_transformers(pair, conversation, generation_prompt):
    ours, theirs, _ = pair
    messages = CONVERSATIONS[conversation]
    for tools in (None, TOOLS):
        want = theirs.apply_chat_template(
            messages, tools=tools, tokenize=False, add_generation_prompt=generation_prompt
        )
        got = ours.apply_chat_template(
            messages, add_generation_prompt=generation_prompt, tools=tools
        )
        assert got == want


def test_encoding_matches_transformers(pair):
    ours, theirs, _ = pair
    for text in ["The quick brown fox", "  émigrés 12345\n\tdef f(): pass", "<s>hi</s>"]:
        assert ours.encode(text) == theirs.encode(text)
        assert ours.encode(text, add_special_tokens=False) == theirs.encode(
            text, add_special_tokens=False
        )
        ids = ours.encode(text)
        assert ours.decode(ids) == theirs.decode(ids, skip_special_tokens=True)


def test_template_errors_are_chat_template_errors(pair):
    ours, _, _ = pair
    with pytest.raises(ChatTemplateError, match="unknown role tool"):
        ours.apply_chat_template([{"role": "tool", "content": "x"}])
    broken = Tokenizer(
        ours.backend,
        bos_token=None,
        eos_token=None,
        eos_token_ids=set(),
        chat_template="{{ messages[0]['content'] + 1 }}",
    )
    with pytest.raises(ChatTemplateError, match="chat template failed"):
        broken.apply_chat_template([{"role": "user", "content": "text"}])  # str + int
    bare = Tokenizer(
        ours.backend, bos_token=None, eos_token=None, eos_token_ids=set(), chat_template=None
    )
    with pytest.raises(ChatTemplateError, match="no chat template"):
        bare.apply_chat_template([{"role": "user", "content": "hi"}])


def test_sandbox_blocks_attribute_escapes(pair):
    ours, _, _ = pair
    evil = Tokenizer(
        ours.backend,
        bos_token=None,
        eos_token=None,
        eos_token_ids=set(),
        chat_template="{{ messages.__class__.__mro__[1].__subclasses__() }}",
    )
    with pytest.raises(ChatTemplateError):
        evil.apply_chat_template([{"role": "user", "content": "hi"}])


def test_strftime_now_and_date_in_templates(pair):
    ours, _, _ = pair
    dated = Tokenizer(
        ours.backend,
        bos_token=None,
        eos_token=None,
        eos_token_ids=set(),
        chat_template="{{ strftime_now('%Y') }}",
    )
    assert dated.apply_chat_template([]) == str(datetime.datetime.now().year)


def test_template_locations(pair, tmp_path):
    """Older transformers keep the template in tokenizer_config.json, sometimes as named
    templates; newer ones in chat_template.jinja."""
    _, _, path = pair
    (tmp_path / "tokenizer.json").write_text((path / "tokenizer.json").read_text())
    config = {"eos_token": {"content": "</s>", "special": True}, "chat_template": "inline"}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    assert Tokenizer.from_hf_dir(tmp_path, set()).chat_template == "inline"
    config["chat_template"] = [
        {"name": "tool_use", "template": "t"},
        {"name": "default", "template": "d"},
    ]
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    tok = Tokenizer.from_hf_dir(tmp_path, {7})
    assert tok.chat_template == "d"
    assert tok.eos_token == "</s>" and tok.eos_token_ids == {7, tok.backend.token_to_id("</s>")}
    assert isinstance(tok.backend, tokenizers.Tokenizer)
