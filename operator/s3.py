"""s3:// for the adapter fetch: where an object is, and AWS Signature Version 4 for a GET.

No SDK: the operator image carries no boto, and a GET needs only the signature (the
algorithm AWS documents as "Authenticating Requests: AWS Signature Version 4", header
form, unsigned-payload hash of an empty body). The credentials are the model fetch's keys
of the tenant's Secret (operator/model_credentials.py): AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, optional AWS_SESSION_TOKEN, AWS_DEFAULT_REGION (default
us-east-1) and AWS_ENDPOINT_URL (an S3-compatible store, e.g. MinIO: path-style URLs).
The secret key only ever enters an HMAC; the headers carry the access key id and the
signature, never the secret.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

import httpx

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
DEFAULT_REGION = "us-east-1"
ALGORITHM = "AWS4-HMAC-SHA256"


@dataclass(frozen=True, slots=True)
class S3Credentials:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None

    def __repr__(self) -> str:  # never the secret, should one end up in a log line
        return f"S3Credentials(access_key_id={self.access_key_id!r}, secret_access_key=***)"


def object_url(bucket: str, key: str, region: str, endpoint: str | None) -> str:
    """The object's HTTPS URL: virtual-hosted on AWS, path-style on a custom endpoint."""
    path = quote(key.lstrip("/"), safe="/-_.~")
    if endpoint:
        return f"{endpoint.rstrip('/')}/{bucket}/{path}"
    return f"https://{bucket}.s3.{region}.amazonaws.com/{path}"


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def sign_get(
    url: str,
    creds: S3Credentials,
    region: str,
    now: datetime | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, str]:
    """The headers that make a GET of `url` a signed S3 request: x-amz-date,
    x-amz-content-sha256, x-amz-security-token (with a session token), Authorization.
    `headers` are extra headers to sign and send as given (e.g. Range)."""
    when = (now or datetime.now(UTC)).astimezone(UTC)
    amz_date, day = when.strftime("%Y%m%dT%H%M%SZ"), when.strftime("%Y%m%d")
    parsed = httpx.URL(url)
    host = parsed.host if parsed.port is None else f"{parsed.host}:{parsed.port}"
    out = {**(headers or {}), "x-amz-date": amz_date, "x-amz-content-sha256": EMPTY_SHA256}
    if creds.session_token:
        out["x-amz-security-token"] = creds.session_token
    signed = {k.lower(): " ".join(v.split()) for k, v in out.items()} | {"host": host}
    names = sorted(signed)
    query = sorted(
        (quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in parsed.params.multi_items()
    )
    canonical = "\n".join(
        [
            "GET",
            parsed.raw_path.split(b"?", 1)[0].decode() or "/",  # already URI-encoded once
            "&".join(f"{k}={v}" for k, v in query),
            "".join(f"{n}:{signed[n]}\n" for n in names),
            ";".join(names),
            EMPTY_SHA256,
        ]
    )
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(
        [ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = _hmac(f"AWS4{creds.secret_access_key}".encode(), day)
    for part in (region, "s3", "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    out["Authorization"] = (
        f"{ALGORITHM} Credential={creds.access_key_id}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    return out
