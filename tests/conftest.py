"""Shared test setup: tools that scripts/setup.sh installs under .tools/bin are on PATH."""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_tools = REPO / ".tools" / "bin"
if _tools.is_dir():
    os.environ["PATH"] = f"{_tools}{os.pathsep}{os.environ.get('PATH', '')}"
