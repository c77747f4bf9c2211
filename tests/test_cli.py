"""The root CLI dispatches to each area and explains what is missing."""

import subprocess
import sys

import pytest

from infleet import __version__
from infleet.cli import SUBCOMMANDS, main


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "infleet", *args], capture_output=True, text=True)


def test_help_lists_every_contract_command():
    out = run("--help")
    assert out.returncode == 0
    for name in ("serve", "operator", "crds", "render", "up", "simulate", "bench"):
        assert f"  {name} " in out.stdout


def test_version():
    out = run("--version")
    assert out.stdout.strip() == f"infleet {__version__}"


def test_unknown_command_is_an_error_naming_it(capsys):
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_every_command_resolves_to_a_callable(name):
    import importlib

    sub = SUBCOMMANDS[name]
    module = importlib.import_module(sub.module)
    assert callable(getattr(module, sub.function))


def test_operator_package_does_not_shadow_stdlib():
    import operator

    assert hasattr(operator, "itemgetter")
    import infleet.operator

    assert infleet.operator.__name__ == "infleet.operator"
