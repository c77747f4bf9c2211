"""DESIGN.md's layering as a test: what each area may import, checked two ways.

- Statically: every import statement in the area's files (function bodies included, so a
  lazy import counts) names only the area itself, the areas it may use, the `infleet` root
  package, or outside packages not on its forbidden list.
- At run time: a fresh interpreter in which the forbidden modules cannot be imported
  (the other areas and the outside packages) imports every module of the area; an import
  chain through an allowed area (operator -> autoscaler -> torch) fails here.

A new area is one line in RULES; an area in setup.py without a line fails the test.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO

HEAVY = ("torch", "transformers", "triton")  # the engine's stack
KUBE = ("kopf", "kubernetes")  # the operator's stack


@dataclass(frozen=True, slots=True)
class Rule:
    may: tuple[str, ...]  # infleet areas (folders) this area may import
    never: tuple[str, ...]  # outside top-level packages it must never import


RULES: dict[str, Rule] = {
    # The CLI imports each area lazily, so `infleet --help` needs none of them.
    "infleet": Rule(may=(), never=HEAVY + KUBE),
    "api": Rule(may=(), never=HEAVY + KUBE),
    "operator": Rule(may=("api", "autoscaler", "lora"), never=HEAVY),
    "autoscaler": Rule(may=("api",), never=HEAVY),
    "router": Rule(may=("api",), never=HEAVY + KUBE),
    "localplane": Rule(may=("api",), never=HEAVY),
    # api: the router's wire format (api/router_wire.py), which the engine publishes, and
    # the keys file (api/tenants.py), which the engine reads too.
    "engine": Rule(may=("api", "kv_tiering", "lora"), never=KUBE),
    "lora": Rule(may=(), never=KUBE),
    "kv_tiering": Rule(may=(), never=KUBE),
}


def setup_areas() -> dict[str, str]:
    """setup.py's folder -> import name table (read, not run: running it calls setup())."""
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "AREAS":
            return ast.literal_eval(node.value)
    raise AssertionError("setup.py has no AREAS table")


AREAS = setup_areas()


def forbidden_areas(area: str) -> set[str]:
    return {a for a in AREAS if a not in (area, "infleet", *RULES[area].may)}


def imported_names(path: Path, package: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in a file, lazy ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the file's package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                found.append((node.lineno, ".".join([*base, node.module or ""]).rstrip(".")))
            else:
                found.append((node.lineno, node.module or ""))
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", "") == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            found.append((node.lineno, str(node.args[0].value)))
    return found


def violation(area: str, module: str) -> str | None:
    top, _, rest = module.partition(".")
    if top in RULES[area].never:
        return f"{top} is forbidden in {area}"
    if top == "infleet" and rest:
        sub = rest.split(".")[0]
        folder = next((f for f, name in AREAS.items() if name == f"infleet.{sub}"), sub)
        if folder in forbidden_areas(area):
            return f"{area} may not import the {folder} area"
    return None


def test_every_area_has_a_rule():
    assert set(AREAS) <= set(RULES), f"add a line to RULES for {sorted(set(AREAS) - set(RULES))}"


@pytest.mark.parametrize("area", RULES)
def test_no_import_statement_crosses_a_layer(area: str):
    if area not in AREAS:
        pytest.skip(f"{area}/ is not built yet")
    package = AREAS[area]
    problems = []
    for path in sorted((REPO / area).rglob("*.py")):
        rel = path.relative_to(REPO / area)
        parts = [package, *rel.with_suffix("").parts]
        module_package = ".".join(parts if path.name == "__init__.py" else parts[:-1])
        module_package = module_package.removesuffix(".__init__")
        for line, name in imported_names(path, module_package):
            why = violation(area, name)
            if why:
                problems.append(f"{area}/{rel}:{line}: imports {name}: {why}")
    assert problems == []


# Runs in a fresh interpreter: forbidden modules made unimportable, then every module of
# the area imported (walk_packages imports each package to find what is inside).
PROBE = """
import importlib, pkgutil, sys
blocked, package = sys.argv[1].split(","), sys.argv[2]

class Block:
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in blocked if b):
            raise ImportError(f"{name} is blocked for {package}")

sys.meta_path.insert(0, Block())
root = importlib.import_module(package)
for info in pkgutil.walk_packages(getattr(root, "__path__", []), package + "."):
    if not info.name.endswith("__main__"):
        importlib.import_module(info.name)
"""


@pytest.mark.parametrize("area", RULES)
def test_the_area_imports_with_forbidden_modules_blocked(area: str):
    if area not in AREAS:
        pytest.skip(f"{area}/ is not built yet")
    blocked = [*RULES[area].never, *(AREAS[a] for a in sorted(forbidden_areas(area)))]
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, ",".join(blocked), AREAS[area]],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
