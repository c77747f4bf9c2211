"""Maps each top-level folder onto an `infleet.<folder>` package.

pyproject.toml holds the metadata; this file only computes the package list so that a
new subpackage (a folder with an __init__.py) ships without editing a list by hand.
"""

from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).parent
# folder -> import name. `operator` must never become a top-level package (stdlib clash).
AREAS = {
    "infleet": "infleet",
    "api": "infleet.api",
    "operator": "infleet.operator",
    "engine": "infleet.engine",
    "autoscaler": "infleet.autoscaler",
    "localplane": "infleet.localplane",
    "lora": "infleet.lora",
    "kv_tiering": "infleet.kv_tiering",
    "router": "infleet.router",
}


def _packages() -> list[str]:
    found = []
    for folder, name in AREAS.items():
        for init in sorted((ROOT / folder).rglob("__init__.py")):
            rel = init.parent.relative_to(ROOT / folder)
            found.append(".".join([name, *rel.parts]))
    return found


setup(
    package_dir={name: folder for folder, name in AREAS.items()},
    packages=_packages(),
    package_data={"": ["*.j2", "*.jinja", "*.json", "*.yaml", "*.lua", "*.csv"]},
)
