"""Fetching a tenant's adapter with the tenant's credentials, and checking it.

The operator fetches (not a Job, not the engine pods): the credentials are in a Secret of
the tenant's namespace, and the replicas run in the service's namespace, which may be
another tenant's or the platform's; a pod can only reference a Secret of its own
namespace, and copying the Secret would write the tenant's credentials somewhere. So the
operator reads the Secret into memory for the one request, sends it as a header, and
keeps it nowhere (not in logs, Events, status, the store or any rendered object).

The Secret's keys are the model fetch's (operator/model_credentials.py): HF_TOKEN for
hf://, BEARER_TOKEN for http(s)://, the AWS variables for s3:// (each GET signed with
SigV4, operator/s3.py; without a Secret, an anonymous GET of a public bucket).
hf://ORG/NAME[:REVISION] is fetched over the Hub's HTTP API ($HF_ENDPOINT, default
https://huggingface.co). A pvc:// adapter is not fetched here: a claim is readable only
from a pod of its own namespace, so an upload Job brings it (operator/lora_pvc.py).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx

from infleet.lora import artifact
from infleet.lora.errors import AdapterError
from infleet.operator import s3
from infleet.operator.model_credentials import BEARER, REQUIRED
from infleet.operator.status import Problem

ARCHIVES = (".tar.gz", ".tgz", ".tar")
TIMEOUT_S = 60.0
HF_ENDPOINT = "https://huggingface.co"
Auth = Callable[[str], dict[str, str]]  # a URL -> the headers of its GET
Secret = dict[str, str]  # the credentials Secret's data, decoded


class FetchFailed(Exception):
    """The artifact cannot be had or is not a servable adapter: `problem` says which."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.problem = Problem(reason, message)


@dataclass(frozen=True, slots=True)
class Fetched:
    packed: artifact.PackedAdapter
    rank: int


def urls(uri: str, hf_endpoint: str = HF_ENDPOINT, secret: Secret | None = None) -> list[str]:
    """The URLs to GET: one archive, or the two files of a directory."""
    scheme, _, rest = uri.partition("://")
    path = rest.split("?", 1)[0]
    if scheme == "hf":
        repo, _, revision = rest.partition(":")
        base = f"{hf_endpoint.rstrip('/')}/{repo.strip('/')}/resolve/{revision or 'main'}"
    elif scheme in ("http", "https"):
        if path.endswith(ARCHIVES):
            return [uri]
        base = uri.rstrip("/")
    elif scheme == "s3":
        bucket, _, key = rest.partition("/")
        region = (secret or {}).get("AWS_DEFAULT_REGION", "").strip() or s3.DEFAULT_REGION
        endpoint = (secret or {}).get("AWS_ENDPOINT_URL", "").strip() or None
        if key.endswith(ARCHIVES):
            return [s3.object_url(bucket, key, region, endpoint)]
        base = s3.object_url(bucket, key.rstrip("/"), region, endpoint).rstrip("/")
    else:
        raise FetchFailed("ArtifactUnreachable", f"{scheme}:// is not an adapter source")
    return [f"{base}/{name}" for name in artifact.FILES]


def request_auth(uri: str, secret: Secret | None) -> Auth:
    """How each GET is authenticated, from the Secret's data; none without a Secret."""
    if secret is None:
        return lambda url: {}
    scheme = uri.partition("://")[0]
    missing = [k for k in REQUIRED.get(scheme, ()) if not secret.get(k, "").strip()]
    if missing:
        raise FetchFailed("ArtifactUnreachable", f"the credentials Secret has no key {missing[0]}")
    if scheme == "s3":
        creds = s3.S3Credentials(
            secret["AWS_ACCESS_KEY_ID"].strip(),
            secret["AWS_SECRET_ACCESS_KEY"].strip(),
            secret.get("AWS_SESSION_TOKEN", "").strip() or None,
        )
        region = secret.get("AWS_DEFAULT_REGION", "").strip() or s3.DEFAULT_REGION
        return partial(_s3_headers, creds, region)
    key = "HF_TOKEN" if scheme == "hf" else BEARER
    headers = {"Authorization": f"Bearer {secret[key].strip()}"}
    return lambda url: headers


def _s3_headers(creds: s3.S3Credentials, region: str, url: str) -> dict[str, str]:
    return s3.sign_get(url, creds, region)


def shown_url(url: str) -> str:
    """The URL without what may be a credential: a presigned query, a user:password@."""
    try:
        return str(httpx.URL(url).copy_with(query=None, userinfo=b""))
    except httpx.InvalidURL:
        return "(an invalid URL)"


def _get(client: httpx.Client, url: str, auth: Auth, max_bytes: int) -> bytes:
    shown = shown_url(url)
    try:
        # httpx drops Authorization on a redirect to another host (the Hub's CDN).
        with client.stream("GET", url, headers=auth(url), follow_redirects=True) as resp:
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
    secret: Secret | None,
    max_bytes: int = artifact.MAX_BYTES,
    client_factory: Callable[[], httpx.Client] | None = None,
    hf_endpoint: str = HF_ENDPOINT,
) -> dict[str, bytes]:
    """The adapter's two files, fetched from `uri` with the credentials in `secret`."""
    targets, auth = urls(uri, hf_endpoint, secret), request_auth(uri, secret)
    factory = client_factory or (lambda: httpx.Client(timeout=TIMEOUT_S))
    with factory() as client:
        got = [(url, _get(client, url, auth, max_bytes)) for url in targets]
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
