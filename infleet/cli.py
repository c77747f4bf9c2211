"""The `infleet` command: a thin dispatcher to each area's own CLI.

Each subcommand lives in its area and is imported only when called, so the operator
image runs `infleet operator` without torch and the engine image runs `infleet serve`
without kopf. A target is `main(argv: list[str]) -> int` and owns its own argparse.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass

from infleet import __version__


@dataclass(frozen=True, slots=True)
class Subcommand:
    module: str
    function: str
    extra: str  # the pip extra whose packages the area needs
    summary: str


SUBCOMMANDS: dict[str, Subcommand] = {
    "serve": Subcommand(
        "infleet.engine.cli",
        "serve_main",
        "engine",
        "serve a model with the bundled engine (OpenAI API)",
    ),
    "bench": Subcommand(
        "infleet.engine.bench",
        "main",
        "engine",
        "benchmark the bundled engine against HF transformers",
    ),
    "operator": Subcommand(
        "infleet.operator.run",
        "operator_main",
        "operator",
        "run the kopf operator against the current kubeconfig",
    ),
    "render": Subcommand(
        "infleet.operator.cli",
        "render_main",
        "operator",
        "print the objects the operator would create for -f FILE",
    ),
    "lora-sync": Subcommand(
        "infleet.operator.lora_sync_server",
        "main",
        "operator",
        "the LoRA sidecar of a vLLM/SGLang pod: loads its service's adapter set",
    ),
    "lora-upload": Subcommand(
        "infleet.operator.lora_uploader",
        "main",
        "operator",
        "the pvc:// upload Job: sends an adapter on a claim to the operator's store",
    ),
    "crds": Subcommand("infleet.api.crds", "main", "", "print the CustomResourceDefinitions"),
    "up": Subcommand(
        "infleet.localplane.up",
        "main",
        "engine,operator,localplane",
        "start a local fleet: control plane, operator, a sample service",
    ),
    "router": Subcommand(
        "infleet.router.cli",
        "main",
        "router",
        "route a service's requests over its replicas (prefix/adapter/load-aware)",
    ),
    "simulate": Subcommand(
        "infleet.autoscaler.simulate_cli",
        "main",
        "",
        "simulate a fleet under an autoscaling policy",
    ),
}


def usage() -> str:
    width = max(map(len, SUBCOMMANDS))
    lines = [f"usage: infleet <command> [args...]   (infleet {__version__})", "", "commands:"]
    lines += [f"  {name:<{width}}  {sub.summary}" for name, sub in SUBCOMMANDS.items()]
    lines += ["", "`infleet <command> --help` describes each command's arguments."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if args[0] in ("-V", "--version"):
        print(f"infleet {__version__}")
        return 0
    name, rest = args[0], args[1:]
    sub = SUBCOMMANDS.get(name)
    if sub is None:
        print(f"infleet: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(sub.module)
    except ModuleNotFoundError as err:
        # A missing third-party package means the area's extra is not installed.
        if err.name and not err.name.startswith("infleet"):
            hint = f" (pip install 'infleet[{sub.extra}]')" if sub.extra else ""
            print(f"infleet {name}: missing package {err.name!r}{hint}", file=sys.stderr)
            return 2
        raise
    return int(getattr(module, sub.function)(rest) or 0)
