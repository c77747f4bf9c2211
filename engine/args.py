"""`infleet serve` settings: the flags pinned in docs/contracts.md, plus `--config FILE`.

A config file is a YAML mapping of the same flag names without `--` (`max-num-seqs: 64`;
`max_num_seqs` works too). Its entries are turned into flags placed before the real
command line, so argparse checks them the same way and a flag given on the command line
wins (argparse keeps the last value).
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

DEFAULT_MODEL = "builtin:smollm2-135m-instruct"
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}


@dataclass(slots=True)
class EngineArgs:
    model: str = DEFAULT_MODEL
    served_model_name: str | None = None  # None: the loaded model's own name
    host: str = "127.0.0.1"
    port: int = 8000
    device: str = "auto"
    dtype: str = "auto"
    max_model_len: int | None = None  # None: the model's
    block_size: int = 16
    kv_cache_memory: int | None = None  # bytes; None: 1 GiB on CPU, measured on CUDA
    kv_cache_dtype: str = "auto"
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 2048
    max_queue: int = 1024
    shutdown_grace_seconds: float = 30.0
    attention_backend: str = "auto"
    # Not a flag: tests and benchmarks pin the KV pool to an exact number of blocks.
    num_kv_blocks: int | None = None
    enable_prefix_caching: bool = True
    # The engine core's step loop (engine/core/engine_core.py, docs/engine.md).
    async_scheduling: bool = True
    enforce_eager: bool = False  # no CUDA graphs
    gpu_memory_utilization: float = 0.90  # of the GPU the engine may fill (KV pool sizing)
    # API keys (engine/server/auth.py); repr=False: keys never reach a log line.
    api_key: str | None = field(default=None, repr=False)
    api_keys_file: str | None = None
    admin_api_key: str | None = field(default=None, repr=False)
    metrics_require_key: bool = False


def parse_size(text: str) -> int:
    """'512MiB', '2GiB', '1.5GB', '1000000' -> bytes."""
    m = _SIZE.match(str(text))
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 512MiB, 2GiB, 1000000)")
    number, unit = float(m.group(1)), (m.group(2) or "").lower()
    scale = 1 << (10 * " kmgt".index(unit[0])) if "i" in unit else _UNITS[unit[:1]]
    return int(number * scale)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    d = EngineArgs()
    p = argparse.ArgumentParser(
        prog="infleet serve", description="Serve a model with the bundled engine (OpenAI API)."
    )
    add = p.add_argument
    add("--config", metavar="FILE", help="YAML mapping of these flags (without --); flags win")
    add("--model", default=d.model, help="HF directory, .gguf file or builtin:NAME")
    add("--served-model-name", default=None, help="the `model` clients send")
    add("--host", default=d.host)
    add("--port", type=int, default=d.port)
    add("--device", default=d.device, choices=["auto", "cpu", "cuda"])
    add("--dtype", default=d.dtype, choices=["auto", "bfloat16", "float16", "float32"])
    add("--max-model-len", type=_positive_int, default=None, help="prompt + max_tokens limit")
    add("--block-size", type=_positive_int, default=d.block_size, help="tokens per KV block")
    add("--kv-cache-memory", type=parse_size, default=None, metavar="SIZE", help="KV pool size")
    add("--kv-cache-dtype", default=d.kv_cache_dtype, choices=["auto", "fp8"])
    add("--max-num-seqs", type=_positive_int, default=d.max_num_seqs)
    add("--max-num-batched-tokens", type=_positive_int, default=d.max_num_batched_tokens)
    add("--max-queue", type=_positive_int, default=d.max_queue, help="waiting requests before 429")
    add("--shutdown-grace-seconds", type=_non_negative_float, default=d.shutdown_grace_seconds)
    add(
        "--attention-backend",
        default=d.attention_backend,
        choices=["auto", "torch", "triton", "flash-attn"],
    )
    add(
        "--async-scheduling",
        action=argparse.BooleanOptionalAction,
        default=d.async_scheduling,
        help="schedule step N+1 while step N runs on the device",
    )
    add("--enforce-eager", action="store_true", help="never capture CUDA graphs")
    add(
        "--gpu-memory-utilization",
        type=_fraction,
        default=d.gpu_memory_utilization,
        help="fraction of GPU memory for weights, activations and the KV pool",
    )
    env = os.environ.get
    add("--api-key", default=env("INFLEET_API_KEY"), help="one tenant's key (env INFLEET_API_KEY)")
    add("--api-keys-file", default=None, metavar="FILE", help="YAML tenant -> key hashes")
    add("--admin-api-key", default=env("INFLEET_ADMIN_API_KEY"), help="key for LoRA load/unload")
    add("--metrics-require-key", action="store_true", help="/metrics needs a key too")
    return p


def config_file_argv(path: str, parser: argparse.ArgumentParser) -> list[str]:
    """Flags equivalent to a YAML config file; raises ValueError naming a bad key."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"--config {path}: {err}") from err
    if data is None:
        return []
    if not isinstance(data, dict):
        raise ValueError(
            f"--config {path}: expected a mapping of flag names, got {type(data).__name__}"
        )
    known = {opt for action in parser._actions for opt in action.option_strings}
    argv: list[str] = []
    for key, value in data.items():
        flag = "--" + str(key).replace("_", "-")
        if flag not in known or flag in ("--config", "--help"):
            raise ValueError(f"--config {path}: unknown key {key!r}")
        if value is None or isinstance(value, (dict, list)):
            raise ValueError(f"--config {path}: {key!r} needs a single value, got {value!r}")
        argv += [flag, str(value)]
    return argv


def parse_args(argv: list[str]) -> EngineArgs:
    """Flags (and --config) to EngineArgs; argparse exits with status 2 on bad input."""
    parser = build_parser()
    first, _ = parser.parse_known_args(argv)
    prefix: list[str] = []
    if first.config:
        try:
            prefix = config_file_argv(first.config, parser)
        except ValueError as err:
            parser.error(str(err))
    ns = parser.parse_args(prefix + argv)
    fields = {k: v for k, v in vars(ns).items() if k != "config"}
    return EngineArgs(**fields)
