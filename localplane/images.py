"""The few images whose entrypoint the process kubelet knows how to run here.

Images are ignored (pods are local processes), so a container without `command` cannot
run, unless its image is one of these: the kubelet then runs the image's ENTRYPOINT with
the container's args, the in-image paths of that entrypoint standing for local files (the
same path rewriting as volume mounts). Today: KServe's storage initializer, the operator's
model fetcher, whose entrypoint (python/storage-initializer/scripts/initializer-entrypoint
in kserve/kserve) calls `kserve_storage.Storage.download_files` on (source, destination)
pairs: here the same call runs on the `kserve-storage` package from PyPI (installed by
scripts/setup.sh, without its cloud SDKs, so hf:// and http(s):// work, s3:// and gs://
do not), so the model fetch runs KServe's own download code, credentials and all.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class KnownImage:
    entrypoint: tuple[str, ...]  # as in the image
    files: dict[str, str]  # in-image path -> content of the local stand-in (executable)


STORAGE_INITIALIZER = f"""#!{sys.executable}
import os, sys
try:
    from kserve_storage import Storage
except ImportError:
    sys.exit("kserve-storage is not installed: pip install --no-deps kserve-storage")
if len(sys.argv) < 3 or len(sys.argv) % 2 != 1:
    sys.exit("usage: initializer-entrypoint SRC DEST [SRC DEST ...]")
pairs = list(zip(sys.argv[1::2], sys.argv[2::2]))
print("Initializing, args: (src_uri, dest_path):", pairs, flush=True)
for _, dest in pairs:
    os.makedirs(dest, exist_ok=True)
try:
    Storage.download_files([s for s, _ in pairs], [d for _, d in pairs])
except Exception as err:
    sys.exit(f"Storage initialization failed: {{err}}")
"""
ENTRYPOINT = "/storage-initializer/scripts/initializer-entrypoint"
KNOWN = {
    "kserve/storage-initializer": KnownImage((ENTRYPOINT,), {ENTRYPOINT: STORAGE_INITIALIZER}),
}


def repository(image: str) -> str:
    """`docker.io/kserve/storage-initializer:v0.16.0@sha256:...` -> `kserve/storage-initializer`."""
    name = image.split("@", 1)[0]
    head, _, tail = name.rpartition("/")
    name = f"{head}/{tail.split(':', 1)[0]}" if head else tail.split(":", 1)[0]
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        name = rest  # a registry host
    return name


def known(image: str) -> KnownImage | None:
    return KNOWN.get(repository(image or ""))


def image_paths(image: str, root: Path) -> dict[str, str]:
    """In-image path -> the local stand-in, written under `root` (for path rewriting)."""
    found = known(image)
    if found is None:
        return {}
    out = {}
    for path, content in found.files.items():
        local = root / "images" / repository(image).replace("/", "_") / path.lstrip("/")
        if not local.exists():
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_text(content)
            local.chmod(0o755)
        out[path] = str(local)
    return out
