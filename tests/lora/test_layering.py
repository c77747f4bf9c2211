"""lora's format half runs without torch (the operator uses it). That no lora module
imports the engine or the Kubernetes stack is tests/test_layering.py's, with every area's."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import torch

from tests.lora.peft_adapters import ATTENTION, AdapterSpec, peft_model, save_adapters, tiny_model

TORCH_FREE = ["adapter_config", "adapter_dir", "admission", "base_model", "cache", "errors",
              "lora_dir", "manifest", "metrics", "safetensors_header"]  # fmt: skip
BLOCKER = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED or any(name.startswith(b + ".") or name == b
                                               for b in BLOCKED if "." in b):
            raise ImportError(f"blocked import of {name}")
sys.meta_path.insert(0, Block())
"""


def run_blocked(blocked: list[str], body: str, *args: str) -> subprocess.CompletedProcess[str]:
    code = f"BLOCKED = {blocked!r}\n{BLOCKER}\n{textwrap.dedent(body)}"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120
    )


def test_format_half_checks_an_adapter_without_torch(tmp_path: Path):
    base = tiny_model("llama")
    spec = AdapterSpec("a", 4, 8, ATTENTION)
    path = save_adapters(peft_model(base, (spec,)), (spec,), tmp_path)["a"]
    (tmp_path / "config.json").write_text(base.config.to_json_string())
    out = run_blocked(
        ["torch", "infleet.engine", "kopf", "kubernetes"],
        f"""
        import json, sys
        from pathlib import Path
        for name in {TORCH_FREE!r}:
            __import__("infleet.lora." + name)
        from infleet.lora.adapter_dir import inspect_adapter
        from infleet.lora.base_model import BaseModelShape
        shape = BaseModelShape.from_hf_config(json.loads(Path(sys.argv[2]).read_text()))
        print(len(inspect_adapter(Path(sys.argv[1]), shape, 16).modules))
        """,
        str(path),
        str(tmp_path / "config.json"),
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "8"  # 4 attention modules x 2 layers
    assert "torch" in sys.modules and torch  # the blocker ran in the child only
