"""Fetching a tenant's adapter with the tenant's credentials, and checking it.

The operator fetches (not a Job, not the engine pods): the credentials are in a Secret of
the tenant's namespace, and the replicas run in the service's namespace, which may be
another tenant's or the platform's; a pod can only reference a Secret of its own
namespace, and copying the Secret would write the tenant's credentials somewhere. So the
operator reads the Secret into memory for the one request, sends it as a header, and
keeps it nowhere (not in logs, Events, status, the store or any rendered object).

The Secret's keys are the model fetch's (operator/model_credentials.py): HF_TOKEN for
hf://, BEARER_TOKEN for http(s)://. hf://ORG/NAME[:REVISION] is fetched over the Hub's
HTTP API ($HF_ENDPOINT, default https://huggingface.co). s3:// and pvc:// are refused as
ArtifactUnreachable with a message saying so (not built yet).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from infleet.lora import artifact
from infleet.lora.errors import AdapterError
from infleet.operator.model_credentials import BEARER
from infleet.operator.status import Problem

ARCHIVES = (".tar.gz", ".tgz", ".tar")
TIMEOUT_S = 60.0
HF_ENDPOINT = "https://huggingface.co"


class FetchFailed(Exception):
    """The artifact cannot be had or is not a servable adapter: `problem` says which."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.problem = Problem(reason, message)


@dataclass(frozen=True, slots=True)
class Fetched:
    packed: artifact.PackedAdapter
    rank: int


def urls(uri: str, hf_endpoint: str = HF_ENDPOINT) -> list[str]:
    """The URLs to GET: one archive, or the two files of a directory."""
    scheme, _, rest = uri.partition("://")
    if scheme == "hf":
        repo, _, revision = rest.partition(":")
        base = f"{hf_endpoint.rstrip('/')}/{repo.strip('/')}/resolve/{revision or 'main'}"
    elif scheme in ("http", "https"):
        if rest.split("?", 1)[0].endswith(ARCHIVES):
            return [uri]
        base = uri.rstrip("/")
    else:
        raise FetchFailed(
            "ArtifactUnreachable",
            f"{scheme}:// adapters are not fetched by this operator yet: use https://, "
            "http:// (in-cluster) or hf://",
        )
    return [f"{base}/{name}" for name in artifact.FILES]


def auth_headers(uri: str, secret: dict[str, str] | None) -> dict[str, str]:
    """The request headers from the Secret's data (decoded); {} without a Secret."""
    if secret is None:
        return {}
    key = "HF_TOKEN" if uri.startswith("hf://") else BEARER
    if key not in secret:
        raise FetchFailed("ArtifactUnreachable", f"the credentials Secret has no key {key}")
    return {"Authorization": f"Bearer {secret[key].strip()}"}


def shown_url(url: str) -> str:
    """The URL without what may be a credential: a presigned query, a user:password@."""
    try:
        return str(httpx.URL(url).copy_with(query=None, userinfo=b""))
    except httpx.InvalidURL:
        return "(an invalid URL)"


def _get(client: httpx.Client, url: str, headers: dict[str, str], max_bytes: int) -> bytes:
    shown = shown_url(url)
    try:
        with client.stream("GET", url, headers=headers, follow_redirects=True) as resp:
            if resp.status_code != 200:
                raise FetchFailed("ArtifactUnreachable", f"GET {shown}: HTTP {resp.status_code}")
            body = bytearray()
            for chunk in resp.iter_bytes():
                body += chunk
                if len(body) > max_bytes:
                    raise FetchFailed(
                        "InvalidAdapter", f"GET {shown}: larger than {max_bytes} bytes"
                    )
            return bytes(body)
    except httpx.HTTPError as err:
        raise FetchFailed("ArtifactUnreachable", f"GET {shown}: {type(err).__name__}") from None


def fetch_files(
    uri: str,
    headers: dict[str, str],
    max_bytes: int = artifact.MAX_BYTES,
    client_factory: Callable[[], httpx.Client] | None = None,
    hf_endpoint: str = HF_ENDPOINT,
) -> dict[str, bytes]:
    """The adapter's two files, fetched from `uri`."""
    factory = client_factory or (lambda: httpx.Client(timeout=TIMEOUT_S))
    with factory() as client:
        got = [(url, _get(client, url, headers, max_bytes)) for url in urls(uri, hf_endpoint)]
    if len(got) == 1:
        try:
            return artifact.unpack(got[0][1], max_bytes)
        except AdapterError as err:
            raise FetchFailed("InvalidAdapter", err.message) from None
    return {url.rsplit("/", 1)[-1]: body for url, body in got}


def check(files: dict[str, bytes]) -> Fetched:
    """Packs and checks the files (format only; the base model's fit is the engine's)."""
    try:
        packed = artifact.pack(files)
        with tempfile.TemporaryDirectory(prefix="infleet-lora-") as tmp:
            for name in artifact.FILES:
                (Path(tmp) / name).write_bytes(files[name])
            rank = artifact.check_format(Path(tmp))
    except AdapterError as err:
        raise FetchFailed("InvalidAdapter", err.message) from None
    return Fetched(packed, rank)
