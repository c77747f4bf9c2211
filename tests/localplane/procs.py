"""Find processes by what they run or where they run (their cwd), via /proc."""

import os
from pathlib import Path


def processes_with(marker: str, under: Path | None = None) -> list[int]:
    """PIDs whose command line contains `marker`, or whose cwd lies under `under`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            cwd = os.readlink(entry / "cwd") if under is not None else ""
        except OSError:
            continue
        if (marker and marker in cmdline) or (under is not None and cwd.startswith(str(under))):
            found.append(int(entry.name))
    return found
