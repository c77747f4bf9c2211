"""`infleet serve` settings: the flags pinned in docs/contracts.md, plus `--config FILE`.

A config file is a YAML mapping of the same flag names without `--` (`max-num-seqs: 64`;
`max_num_seqs` works too). Its entries are turned into flags placed before the real
command line, so argparse checks them the same way and a flag given on the command line
wins (argparse keeps the last value). A list gives a flag that takes several values its
values (`lora-modules: [a=/p, b=/q]`), a mapping is passed as JSON
(`speculative-config: {method: ngram}`), and `true`/`false` switch an on/off flag.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from infleet.engine.server.generation_config import MODES as GENERATION_CONFIG_MODES
from infleet.engine.spec.config import (
    SpeculativeConfig,
    SpeculativeConfigError,
    parse_speculative_config,
)

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
    # KV tiers below the device pool (kv_tiering/, docs/kv_tiering.md); 0: off.
    kv_dram_size: int = 0  # bytes
    kv_nvme_size: int = 0  # bytes; needs kv_nvme_path and a DRAM tier
    kv_nvme_path: str | None = None
    quantization: str = "auto"  # auto: the checkpoint's own format, else none
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 2048
    max_queue: int = 1024
    shutdown_grace_seconds: float = 30.0
    attention_backend: str = "auto"
    # LoRA adapters: engine/adapters (the API side) and engine/core/lora_state.py (the core).
    enable_lora: bool = False
    max_loras: int = 4
    max_cpu_loras: int | None = None  # None: --max-loras
    max_lora_rank: int = 16
    lora_dir: str | None = None  # where adapters live; None: a temporary directory
    lora_set: str | None = None  # the mounted set, read at start-up
    lora_modules: list[str] = field(default_factory=list)  # name=path, loaded at start-up
    generation_config: str = "auto"  # auto, vllm, none or a directory
    disable_log_requests: bool = False
    max_request_body_size: int = 32 << 20  # bytes; a bigger body gets 413
    # Not a flag: tests and benchmarks pin the KV pool to an exact number of blocks.
    num_kv_blocks: int | None = None
    enable_prefix_caching: bool = True
    # The engine core's step loop (engine/core/engine_core.py, docs/engine.md).
    async_scheduling: bool = True
    # --speculative-config (engine/spec/config.py); None: no speculative decoding.
    speculative_config: SpeculativeConfig | None = None
    enforce_eager: bool = False  # no CUDA graphs
    gpu_memory_utilization: float = 0.90  # of the GPU the engine may fill (KV pool sizing)
    # API keys (engine/server/auth.py); repr=False: keys never reach a log line.
    api_key: str | None = field(default=None, repr=False)
    api_keys_file: str | None = None
    admin_api_key: str | None = field(default=None, repr=False)
    metrics_require_key: bool = False
    # Parallelism (engine/distributed/, docs/engine.md "Parallelism"): vLLM's spellings.
    # Multi-node defaults come from LeaderWorkerSet's environment when it is there.
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    enable_expert_parallel: bool = False
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int | None = None  # None: a free port (one node), 29500 (several)


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


def _lora_module(text: str) -> str:
    """One --lora-modules entry in either of vLLM's forms, `name=path` or a JSON object
    with `name` and `path`; kept as `name=path`."""
    if text.lstrip().startswith("{"):
        try:
            entry = json.loads(text)
            name, path = str(entry["name"]), str(entry["path"])
        except (ValueError, KeyError, TypeError):
            raise argparse.ArgumentTypeError(
                f'expected NAME=PATH or {{"name": ..., "path": ...}}, got {text!r}'
            ) from None
    else:
        name, sep, path = text.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    if not name.strip() or not path.strip():
        raise argparse.ArgumentTypeError(f"a name and a path are needed, got {text!r}")
    return f"{name.strip()}={path.strip()}"


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {value}")
    return value


def _generation_config(text: str) -> str:
    if text in GENERATION_CONFIG_MODES or Path(text).expanduser().is_dir():
        return text
    raise argparse.ArgumentTypeError(f"{text!r}: give auto, vllm, none or a directory")


def _speculative_config(text: str) -> SpeculativeConfig:
    try:
        return parse_speculative_config(text)
    except SpeculativeConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


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
    add("--kv-dram-size", type=parse_size, default=0, metavar="SIZE", help="KV tier in host DRAM")
    add("--kv-nvme-size", type=parse_size, default=0, metavar="SIZE", help="KV tier on local disk")
    add("--kv-nvme-path", default=None, metavar="DIR", help="directory of the NVMe KV tier")
    add(
        "--quantization",
        default=d.quantization,
        choices=["auto", "none", "fp8", "fp4"],
        help="weights: auto (the checkpoint's format), fp8 (W8A8), fp4 (NVFP4, W4A16)",
    )
    add("--max-num-seqs", type=_positive_int, default=d.max_num_seqs)
    add("--max-num-batched-tokens", type=_positive_int, default=d.max_num_batched_tokens)
    add("--max-queue", type=_positive_int, default=d.max_queue, help="waiting requests before 429")
    add("--shutdown-grace-seconds", type=_non_negative_float, default=d.shutdown_grace_seconds)
    add(
        "--attention-backend",
        default=d.attention_backend,
        choices=["auto", "torch", "triton", "flash-attn"],
    )
    add("--enable-lora", type=_bool, nargs="?", const=True, default=False, metavar="BOOL")
    add("--max-loras", type=_positive_int, default=d.max_loras, help="adapters per batch")
    add("--max-cpu-loras", type=_positive_int, default=None, help="adapters known at once")
    add("--max-lora-rank", type=_positive_int, default=d.max_lora_rank)
    add("--lora-dir", default=None, metavar="DIR", help="adapters' files; lora_path inside")
    add("--lora-set", default=None, metavar="DIR", help="adapter set to load at start-up")
    add(
        "--lora-modules", type=_lora_module, nargs="+", default=[], metavar="NAME=PATH",
        help="adapters to serve from the start",
    )  # fmt: skip
    add(
        "--async-scheduling",
        action=argparse.BooleanOptionalAction,
        default=d.async_scheduling,
        help="schedule step N+1 while step N runs on the device",
    )
    add(
        "--speculative-config",
        type=_speculative_config,
        default=None,
        metavar="JSON",
        help='speculative decoding, e.g. \'{"method": "ngram", "num_speculative_tokens": 4}\'',
    )
    add("--enforce-eager", action="store_true", help="never capture CUDA graphs")
    add(
        "--gpu-memory-utilization",
        type=_fraction,
        default=d.gpu_memory_utilization,
        help="fraction of GPU memory for weights, activations and the KV pool",
    )
    add(
        "--generation-config",
        type=_generation_config,
        default=d.generation_config,
        metavar="auto|vllm|none|DIR",
        help="sampling defaults: the model's generation_config.json (auto), none (vllm, none)",
    )
    add("--disable-log-requests", action="store_true", help="no log line per request")
    add(
        "--max-request-body-size",
        type=parse_size,
        default=d.max_request_body_size,
        metavar="SIZE",
        help="larger request bodies get 413 (default 32MiB)",
    )
    env = os.environ.get
    add("--api-key", default=env("INFLEET_API_KEY"), help="one tenant's key (env INFLEET_API_KEY)")
    add("--api-keys-file", default=None, metavar="FILE", help="YAML tenant -> key hashes")
    add(
        "--admin-api-key",
        default=env("INFLEET_ADMIN_API_KEY"),
        help="key for LoRA load/unload and the router feed",
    )
    add("--metrics-require-key", action="store_true", help="/metrics needs a key too")
    add("--tensor-parallel-size", "-tp", type=_positive_int, default=1, help="ranks per layer")
    add("--pipeline-parallel-size", "-pp", type=_positive_int, default=1, help="stages")
    add("--enable-expert-parallel", action="store_true", help="spread experts over TP ranks")
    # LeaderWorkerSet sets these in every pod of a group (leader: worker index 0).
    add("--nnodes", type=_positive_int, default=int(env("LWS_GROUP_SIZE", "1")))
    add("--node-rank", type=int, default=int(env("LWS_WORKER_INDEX", "0")))
    add("--master-addr", default=env("LWS_LEADER_ADDRESS", d.master_addr))
    add("--master-port", type=_positive_int, default=None, help="rendezvous port (29500)")
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
    actions = {opt: action for action in parser._actions for opt in action.option_strings}
    argv: list[str] = []
    for key, value in data.items():
        flag = "--" + str(key).replace("_", "-")
        if flag not in actions or flag in ("--config", "--help"):
            raise ValueError(f"--config {path}: unknown key {key!r}")
        try:
            argv += _config_entry_argv(flag, value, actions[flag])
        except ValueError as err:
            raise ValueError(f"--config {path}: {key!r} {err}") from None
    return argv


def _config_entry_argv(flag: str, value: object, action: argparse.Action) -> list[str]:
    """One config entry as command-line words; ValueError says what the flag needs."""
    if action.nargs == 0:  # an on/off flag (store_true, or --x/--no-x)
        if not isinstance(value, bool):
            raise ValueError(f"is an on/off flag: give true or false, got {value!r}")
        if value:
            return [flag]
        negative = "--no-" + flag[2:]
        if negative in action.option_strings:
            return [negative]
        if action.default is False or action.default is None:
            return []  # off is the default
        raise ValueError("cannot be switched off")
    if value is None:
        raise ValueError("needs a value, got nothing")
    if isinstance(value, list):
        if action.nargs not in ("+", "*") and not isinstance(action.nargs, int):
            raise ValueError(f"takes a single value, got a list {value!r}")
        return [flag, *(_word(v) for v in value)]
    return [flag, _word(value)]


def _word(value: object) -> str:
    # Mappings (and mappings inside lists) travel as JSON, the way vLLM's JSON flags read them.
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


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
