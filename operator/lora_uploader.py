"""`infleet lora-upload`: the pvc:// upload Job's one container (the operator's image).

It runs in the tenant's namespace with the claim mounted read-only, reads the adapter at
SOURCE (a directory with the two adapter files, or a .tar.gz/.tgz/.tar), packs the
canonical tar (lora/artifact.py: the same bytes, so the same checksum, as any other
source gives) and PUTs it to the operator's store with the one-time token
(operator/lora_upload.py). The token comes from $INFLEET_UPLOAD_TOKEN, which the Job
fills from the adapter's upload Secret by reference: never an argument (arguments show in
the pod spec and `ps`). A failure is one line on stderr, which the container keeps as
its termination message (`FallbackToLogsOnError`), so the controller reads it from the
pod into the adapter's `ArtifactUnreachable`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import httpx

from infleet.lora import artifact
from infleet.lora.errors import AdapterError
from infleet.operator.lora_artifact import ARCHIVES

TOKEN_ENV = "INFLEET_UPLOAD_TOKEN"
TIMEOUT_S = 120.0


class UploadFailed(Exception):
    pass


def read_source(source: Path, max_bytes: int = artifact.MAX_BYTES) -> artifact.PackedAdapter:
    """The canonical tar of the adapter at `source` (a directory or an archive)."""
    try:
        if source.is_dir():
            files = {}
            for name in artifact.FILES:
                path = source / name
                if not path.is_file():
                    raise UploadFailed(f"{name} is missing from {source}")
                if path.stat().st_size > max_bytes:
                    raise UploadFailed(f"{path} is larger than {max_bytes} bytes")
                files[name] = path.read_bytes()
        elif source.is_file() and source.name.endswith(ARCHIVES):
            if source.stat().st_size > max_bytes:
                raise UploadFailed(f"{source} is larger than {max_bytes} bytes")
            files = artifact.unpack(source.read_bytes(), max_bytes)
        elif source.exists():
            raise UploadFailed(f"{source} is neither a directory nor a .tar.gz/.tgz/.tar archive")
        else:
            raise UploadFailed(f"{source} does not exist on the claim")
        return artifact.pack(files)
    except AdapterError as err:
        raise UploadFailed(f"{source}: {err.message}") from None
    except OSError as err:
        raise UploadFailed(f"{source}: {err.strerror}") from None


def upload(packed: artifact.PackedAdapter, store: str, token: str) -> None:
    url = f"{store.rstrip('/')}/uploads/{packed.digest}.tar"
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-tar"}
    try:
        resp = httpx.put(url, content=packed.data, headers=headers, timeout=TIMEOUT_S)
    except httpx.HTTPError as err:
        raise UploadFailed(f"the adapter store at {store}: {type(err).__name__}") from None
    if resp.status_code != 201:
        try:
            message = resp.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = resp.text[:200]
        raise UploadFailed(f"the adapter store refused it (HTTP {resp.status_code}): {message}")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="infleet lora-upload",
        description=f"Upload an adapter to the operator's store (token in ${TOKEN_ENV}).",
    )
    p.add_argument("--source", type=Path, required=True, help="adapter directory or archive")
    p.add_argument("--store", required=True, help="the adapter store's base URL")
    args = p.parse_args(argv)
    token = os.environ.get(TOKEN_ENV, "").strip()
    try:
        if not token:
            raise UploadFailed(f"${TOKEN_ENV} is not set")
        packed = read_source(args.source)
        upload(packed, args.store, token)
    except UploadFailed as err:
        print(f"lora-upload: {err}", file=sys.stderr)
        return 1
    print(f"lora-upload: stored sha256:{packed.digest} ({packed.size} bytes)")
    return 0
