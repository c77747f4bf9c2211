"""kv_tiering may import torch but never the engine, the operator or Kubernetes clients
(DESIGN.md: the engine imports kv_tiering, not the other way round)."""

import subprocess
import sys

BLOCKED = ("infleet.engine", "infleet.operator", "infleet.autoscaler", "kopf", "kubernetes")

SCRIPT = f"""
import importlib.abc, pkgutil, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in {BLOCKED!r}):
            raise ImportError("kv_tiering must not import " + name)

sys.meta_path.insert(0, Block())
import infleet.kv_tiering as k
for mod in pkgutil.iter_modules(k.__path__):
    __import__("infleet.kv_tiering." + mod.name)
print("ok")
"""


def test_kv_tiering_imports_without_the_engine_or_kubernetes():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
