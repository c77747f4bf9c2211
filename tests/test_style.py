"""The tree stays ruff-clean: lint and format are part of the test suite."""

import shutil
import subprocess

from tests.conftest import REPO


def ruff(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("ruff") or str(REPO / ".venv" / "bin" / "ruff")
    return subprocess.run([exe, *args], cwd=REPO, capture_output=True, text=True)


def test_ruff_lint_clean():
    out = ruff("check", ".")
    assert out.returncode == 0, out.stdout + out.stderr


def test_ruff_format_clean():
    out = ruff("format", "--check", ".")
    assert out.returncode == 0, out.stdout + out.stderr
