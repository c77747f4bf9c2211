"""The Argo CD health check, run by lua5.4 over sample InferenceServices for each health state,
and over statuses the operator's own status code computes.

The script under test is the one the chart ships (read from the rendered ConfigMap), so what
is tested is what Argo CD runs.
"""

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from infleet.operator.replicas import PoolReplicas
from infleet.operator.status import Problem, compute_status
from tests.charts.helm import render
from tests.charts.paths import HERE, tool
from tests.operator.samples import body

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


def pool(replicas: int, ready: int, generation: int = 1, observed: int = 1, **extra: Any) -> dict:
    """A pool Deployment as the API server reports it."""
    status = {"observedGeneration": observed, "replicas": replicas, "updatedReplicas": replicas}
    return {
        "metadata": {"generation": generation},
        "spec": {"replicas": replicas},
        "status": {**status, "readyReplicas": ready, **extra},
    }


STUCK = {"conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "exceeded its progress deadline"}]}  # fmt: skip
# (name, spec overrides, deployments, per-pool plan, problem, expected health, message start)
OPERATOR_SCENARIOS = [
    ("all ready", {}, {"dedicated": pool(1, 1), "spot": pool(2, 2)}, (1, 2), None, "Healthy", "AllReplicasReady: 3/3"),
    ("rolling out", {}, {"dedicated": pool(1, 1), "spot": pool(2, 2, generation=2)}, (1, 2), None, "Progressing", "RollingOut: waiting for spot"),
    ("pods not ready yet", {}, {"dedicated": pool(1, 0), "spot": pool(2, 0)}, (1, 2), None, "Progressing", "RollingOut"),
    ("rollout stuck", {}, {"dedicated": pool(1, 1), "spot": pool(2, 0, **STUCK)}, (1, 2), None, "Degraded", "RolloutFailed: spot: exceeded"),
    ("invalid spec", {}, {"dedicated": None, "spot": None}, None, ("InvalidSpec", "spec.scaling: bad"), "Degraded", "InvalidSpec: spec.scaling: bad"),
    ("scaled to zero", {"scaling": {"minReplicas": 0, "scaleToZero": {"enabled": True}}}, {"dedicated": pool(0, 0), "spot": pool(0, 0)}, (0, 0, "scaling.minReplicas is 0"), None, "Suspended", "ScaledToZero: scaled to zero on purpose: scaling.minReplicas is 0"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("spec", "deployments", "plan", "problem", "health", "start"),
    [s[1:] for s in OPERATOR_SCENARIOS],
    ids=[s[0] for s in OPERATOR_SCENARIOS],
)
def test_health_of_statuses_the_operator_computes(
    script: Path, spec, deployments, plan, problem, health, start
):
    obj = body("chat", "team-a", capacity={"spot": {"enabled": True}}, **spec)
    obj["metadata"]["generation"] = 1
    replicas = None if plan is None else PoolReplicas(*plan)
    reason = None if problem is None else Problem(*problem)
    obj["status"] = compute_status(obj, deployments, None, replicas, "2026-01-01T00:00:00Z", reason)
    status, message = run_health(script, obj)
    assert (status, message[: len(start)]) == (health, start), message
    obj["metadata"]["generation"] = 2  # the spec moved on; this status is for generation 1
    assert run_health(script, obj)[0] == "Progressing"
