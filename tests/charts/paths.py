"""Where the chart, its alert rules and its docs live, for every test in this folder."""

import shutil
from pathlib import Path

from tests.conftest import REPO

CHART = REPO / "charts" / "infleet-operator"
RULES = CHART / "files" / "prometheus-rules.yaml"
HEALTH_LUA = CHART / "files" / "argocd-health.lua"
OPERATIONS_DOC = REPO / "docs" / "operations.md"
CONTRACTS_DOC = REPO / "docs" / "contracts.md"
HERE = Path(__file__).parent


def tool(name: str) -> str:
    """The path of a real binary the tests drive; scripts/setup.sh installs each of them."""
    path = shutil.which(name)
    assert path, f"{name} is not on PATH: run scripts/setup.sh"
    return path
