"""`infleet serve` flags and --config files (docs/contracts.md)."""

import pytest

from infleet.cli import main as infleet_main
from infleet.engine.args import (
    DEFAULT_MODEL,
    EngineArgs,
    build_parser,
    config_file_argv,
    parse_args,
    parse_size,
)
from infleet.engine.spec.config import SpeculativeConfig


def test_defaults_match_the_contract():
    a = parse_args([])
    assert a == EngineArgs()
    assert a.model == DEFAULT_MODEL == "builtin:smollm2-135m-instruct"
    assert (a.host, a.port, a.block_size, a.max_num_seqs) == ("127.0.0.1", 8000, 16, 256)
    assert (a.max_num_batched_tokens, a.max_queue, a.shutdown_grace_seconds) == (2048, 1024, 30.0)
    assert a.kv_cache_memory is None and a.max_model_len is None and a.served_model_name is None


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512MiB", 512 << 20),
        ("2GiB", 2 << 30),
        ("1.5GB", 1_500_000_000),
        ("1000000", 1_000_000),
        ("64 kib", 65536),
    ],
)
def test_sizes(text, size):
    assert parse_size(text) == size


def test_config_file_with_flags_winning(tmp_path):
    cfg = tmp_path / "engine.yaml"
    cfg.write_text(
        "model: /models/x\nmax-num-seqs: 64\nkv_cache_memory: 512MiB\nport: 9000\nshutdown-grace-seconds: 5\n"
    )
    a = parse_args(["--config", str(cfg), "--port", "9100"])
    assert (a.model, a.max_num_seqs, a.kv_cache_memory, a.port, a.shutdown_grace_seconds) == (
        "/models/x",
        64,
        512 << 20,
        9100,
        5.0,
    )


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("max-num-sequences: 3\n", "unknown key 'max-num-sequences'"),
        ("max-num-seqs: zero\n", "--max-num-seqs: invalid"),
        ("- a\n- b\n", "expected a mapping"),
        ("dtype: float8\n", "--dtype: invalid choice"),
    ],
)
def test_bad_config_names_the_key(tmp_path, capsys, content, needle):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(content)
    with pytest.raises(SystemExit) as exit_:
        parse_args(["--config", str(cfg)])
    assert exit_.value.code == 2 and needle in capsys.readouterr().err


def test_bad_flags_and_missing_model_exit_2_with_a_message(capsys, tmp_path):
    with pytest.raises(SystemExit):
        parse_args(["--kv-cache-memory", "lots"])
    assert "not a size: 'lots'" in capsys.readouterr().err
    for bad in ("just-a-name", "=/path", '{"name": "x"}'):
        with pytest.raises(SystemExit):
            parse_args(["--lora-modules", bad])
        assert "--lora-modules: " in capsys.readouterr().err
    assert infleet_main(["serve", "--model", str(tmp_path / "nope")]) == 2
    assert "not found" in capsys.readouterr().err


def test_config_lists_mappings_and_switches(tmp_path):
    parser = build_parser()
    cfg = tmp_path / "engine.yaml"
    cfg.write_text(
        "lora-modules: [a=/adapters/a, {name: b, path: /adapters/b}]\n"
        "speculative-config: {method: ngram, num_speculative_tokens: 3}\n"
        "disable-log-requests: true\n"
        "generation-config: vllm\n"
    )
    ns = parser.parse_args(config_file_argv(str(cfg), parser))
    assert ns.lora_modules == ["a=/adapters/a", "b=/adapters/b"]
    assert ns.speculative_config == SpeculativeConfig("ngram", 3)
    assert ns.disable_log_requests is True and ns.generation_config == "vllm"
    cfg.write_text("disable-log-requests: false\nmax-request-body-size: 1MiB\n")
    a = parse_args(["--config", str(cfg)])
    assert a.disable_log_requests is False and a.max_request_body_size == 1 << 20


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("disable-log-requests: 3\n", "'disable-log-requests' is an on/off flag"),
        ("max-num-seqs: [1, 2]\n", "'max-num-seqs' takes a single value"),
        ("port:\n", "'port' needs a value"),
        ("generation-config: sometimes\n", "--generation-config: 'sometimes': give auto"),
    ],
)
def test_bad_config_values_name_the_key(tmp_path, capsys, content, needle):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(content)
    with pytest.raises(SystemExit) as exit_:
        parse_args(["--config", str(cfg)])
    assert exit_.value.code == 2 and needle in capsys.readouterr().err
