"""Where an adapter's files come from: a local directory, or the operator's store.

A `lora_path` that is an http(s) URL names a canonical adapter tar (lora/artifact.py) in
the operator's store, whose file name is its sha256: the engine downloads it, checks the
digest, and unpacks the two files into `--lora-dir/<sha256>/` (written once, atomically;
another name for the same artifact reuses it). A local path must resolve inside
`--lora-dir`, as vLLM's lora_path does in a cluster.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import aiohttp

from infleet.lora.artifact import MAX_BYTES, unpack_checked
from infleet.lora.errors import AdapterError
from infleet.lora.lora_dir import resolve_inside

_DIGEST = re.compile(r"/([0-9a-f]{64})\.tar$")
TIMEOUT_S = 120.0


def is_url(lora_path: str) -> bool:
    return lora_path.startswith(("http://", "https://"))


async def download(url: str, lora_dir: Path) -> Path:
    """The adapter at `url` (a store URL ending in <sha256>.tar), unpacked under lora_dir."""
    match = _DIGEST.search(url.split("?", 1)[0])
    if match is None:
        raise AdapterError("lora_path", "a lora_path URL must end in <sha256>.tar")
    digest = match[1]
    target = lora_dir / digest
    if target.is_dir():
        return target
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as http, http.get(url) as resp:
            if resp.status != 200:
                raise AdapterError("lora_path", f"GET {url}: HTTP {resp.status}")
            if (resp.content_length or 0) > MAX_BYTES:
                raise AdapterError("lora_path", f"GET {url}: larger than {MAX_BYTES} bytes")
            body = bytearray()
            async for chunk in resp.content.iter_chunked(1 << 20):
                body += chunk
                if len(body) > MAX_BYTES:
                    raise AdapterError("lora_path", f"GET {url}: larger than {MAX_BYTES} bytes")
            data = bytes(body)
    except (aiohttp.ClientError, TimeoutError) as err:
        raise AdapterError("lora_path", f"GET {url}: {type(err).__name__}") from None
    files = unpack_checked(data, digest)
    partial = Path(tempfile.mkdtemp(dir=lora_dir, prefix=".partial-"))
    for name, body in files.items():
        (partial / name).write_bytes(body)
    try:
        os.rename(partial, target)
    except OSError:  # another load of the same artifact finished first: it serves
        shutil.rmtree(partial, ignore_errors=True)
    return target


async def local_dir(lora_path: str, lora_dir: Path) -> Path:
    """The directory a request names: downloaded from a URL, or inside lora_dir."""
    if is_url(lora_path):
        return await download(lora_path, lora_dir)
    return resolve_inside(lora_dir, lora_path)
