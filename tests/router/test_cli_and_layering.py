"""`infleet router` as a command, and its shared leaf modules import no server stack (that
the router imports `infleet.api` and nothing heavier is tests/test_layering.py's)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from infleet.api.tenants import hash_key
from tests.router.processes import INFLEET

FORBIDDEN = ["torch", "kopf", "kubernetes", "transformers", "infleet.engine",
             "infleet.operator", "infleet.autoscaler", "infleet.localplane"]  # fmt: skip
# Modules the engine shares: the keys file and the wire format (api/), the prefix keys.
LEAVES = ["infleet.api.tenants", "infleet.api.router_wire", "infleet.router.prefix_keys"]


def import_blocked(modules: list[str], blocked: list[str]) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys\n"
        f"for name in {blocked!r}: sys.modules[name] = None\n"
        f"for name in {modules!r}: __import__(name)\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_the_shared_leaf_modules_import_no_server_stack():
    # infleet.api itself is allowed: the keys file's parser lives there (api/tenants.py).
    out = import_blocked(LEAVES, [*FORBIDDEN, "aiohttp", "prometheus_client"])
    assert out.returncode == 0, out.stderr


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([INFLEET, "router", *args], capture_output=True, text=True, timeout=60)


def test_hash_key_prints_the_keys_file_line():
    out = run("--hash-key", "s3cret")
    assert out.returncode == 0 and out.stdout.strip() == hash_key("s3cret")


def test_bad_arguments_are_named(tmp_path: Path):
    assert "--model is required" in run("--replica", "http://x").stderr
    assert "--replica URL" in run("--model", "m").stderr
    spec = tmp_path / "spec.yaml"
    spec.write_text("holdQueue: {maxRequests: -1}\ntenantLimits: {rps: 3}\n")
    out = run("--model", "m", "--replica", "http://x", "--spec", str(spec))
    assert out.returncode != 0
    assert "holdQueue.maxRequests" in out.stderr and "tenantLimits.rps" in out.stderr
    keys = tmp_path / "keys.yaml"
    keys.write_text("team: [plaintext-key]\n")
    out = run("--model", "m", "--replica", "http://x", "--api-keys-file", str(keys))
    assert out.returncode == 2 and "'team'" in out.stderr and "not a key hash" in out.stderr
