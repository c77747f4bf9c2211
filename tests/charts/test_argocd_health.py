"""The Argo CD health check, run by lua5.4 over sample InferenceServices for each health state.

The script under test is the one the chart ships (read from the rendered ConfigMap), so what
is tested is what Argo CD runs.
"""

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.charts.helm import render
from tests.charts.paths import HERE, tool

CASES = yaml.safe_load((HERE / "argocd_health_cases.yaml").read_text())
KEY = "resource.customizations.health.infleet.io_InferenceService"


def lua_literal(value: Any) -> str:
    """A Python value as a Lua table constructor (how Argo CD hands the object to the script)."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    if isinstance(value, list):
        return "{" + ", ".join(map(lua_literal, value)) + "}"
    return "{" + ", ".join(f"[{lua_literal(k)}] = {lua_literal(v)}" for k, v in value.items()) + "}"


@pytest.fixture(scope="module")
def script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = next(o for o in render() if o["metadata"]["name"].endswith("-argocd-health"))
    path = tmp_path_factory.mktemp("argocd") / "health.lua"
    path.write_text(config["data"][KEY])
    return path


def run_health(script: Path, obj: dict[str, Any]) -> tuple[str, str]:
    out = subprocess.run(
        [
            tool("lua5.4"),
            "-e", f"obj = {lua_literal(obj)}",
            "-e", f"local hs = dofile({lua_literal(str(script))}); io.write(hs.status, '\\n', hs.message)",
        ],
        capture_output=True, text=True, timeout=10,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    status, message = out.stdout.split("\n", 1)
    return status, message


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_health_state_and_message(script: Path, case: dict[str, Any]):
    assert run_health(script, case["object"]) == (
        case["expect"]["status"],
        case["expect"]["message"],
    )


def test_every_argocd_health_state_is_covered():
    states = {c["expect"]["status"] for c in CASES}
    assert states == {"Healthy", "Progressing", "Degraded", "Suspended"}


def test_script_stays_within_lua_5_1_which_argocd_embeds(script: Path):
    # Argo CD runs gopher-lua (Lua 5.1); these 5.3+ constructs would fail there, not here.
    source = re.sub(r"--[^\n]*", "", script.read_text())
    for construct in ("//", "goto ", "utf8.", "<const>", "<close>", "math.type", "string.pack"):
        assert construct not in source, f"{construct!r} is not Lua 5.1"
