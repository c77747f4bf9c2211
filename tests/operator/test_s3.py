"""s3:// adapters: the SigV4 signer against AWS's published example and botocore's signer,
and a fetch from an S3-compatible HTTP server that checks every request's signature with
botocore (an independent implementation) and answers 403 to a wrong one."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from unittest import mock

import botocore.auth as botocore_auth
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from infleet.lora.artifact import pack
from infleet.operator.lora_artifact import FetchFailed, check, fetch_files
from infleet.operator.s3 import S3Credentials, sign_get
from tests.lora.written_adapters import Base, adapter_files, targz

SMALL = Base(hidden=64, layers=2, q=64, kv=32)
SECRET = {"AWS_ACCESS_KEY_ID": "AKTENANTA", "AWS_SECRET_ACCESS_KEY": "s3cr3t/of+team-a",
          "AWS_SESSION_TOKEN": "session-tok", "AWS_DEFAULT_REGION": "eu-west-3"}  # fmt: skip


def botocore_signature(
    url: str, creds: Credentials, region: str, amz_date: str | None = None
) -> tuple[str, str]:
    """(Authorization, X-Amz-Date) botocore signs for a GET of `url`, at `amz_date` (its
    clock set there) or now."""
    request = AWSRequest(method="GET", url=url, headers={})
    signer = botocore_auth.S3SigV4Auth(creds, "s3", region)
    if amz_date is None:
        signer.add_auth(request)
    else:
        try:
            when = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ")
        except ValueError:
            return "", amz_date
        with mock.patch.object(botocore_auth, "get_current_datetime", lambda: when):
            signer.add_auth(request)
    return request.headers["Authorization"], request.headers["X-Amz-Date"]


def test_the_signature_of_aws_documented_example():
    # "Example: GET Object" of the S3 API reference's SigV4 header-signing page.
    creds = S3Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    headers = sign_get("https://examplebucket.s3.amazonaws.com/test.txt", creds, "us-east-1",
                       datetime(2013, 5, 24, tzinfo=UTC), {"Range": "bytes=0-9"})  # fmt: skip
    assert headers["Authorization"].endswith(
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )
    assert "wJalr" not in str(headers) and "wJalr" not in repr(creds)


@pytest.mark.parametrize("url", [
    "https://bkt.s3.eu-west-3.amazonaws.com/team%20a/adapter_config.json",
    "http://127.0.0.1:9000/bkt/a.tar.gz?versionId=v%2F1&x=2",
])  # fmt: skip
def test_the_signer_agrees_with_botocore(url):
    expected, amz_date = botocore_signature(url, Credentials("AK", "SK", "TOK"), "eu-west-3")
    when = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    mine = sign_get(url, S3Credentials("AK", "SK", "TOK"), "eu-west-3", when)
    assert mine["Authorization"] == expected


@pytest.fixture(scope="module")
def s3_server():
    """An S3-compatible endpoint (path-style): objects by /bucket/key, each GET checked by
    recomputing its signature with botocore from the request's own x-amz-date."""
    files = adapter_files(SMALL, rank=4)
    objects = {f"/bkt/team-a/bot/{k}": v for k, v in files.items()}
    objects["/bkt/bot.tar.gz"] = targz(files)
    seen: list[dict[str, str]] = []
    creds = Credentials(SECRET["AWS_ACCESS_KEY_ID"], SECRET["AWS_SECRET_ACCESS_KEY"],
                        SECRET["AWS_SESSION_TOKEN"])  # fmt: skip

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(dict(self.headers))
            url = f"http://{self.headers['Host']}{self.path}"
            expected = botocore_signature(url, creds, SECRET["AWS_DEFAULT_REGION"],
                                          self.headers.get("x-amz-date", ""))[0]  # fmt: skip
            if self.headers.get("Authorization") != expected:
                body, status = b"<Error><Code>SignatureDoesNotMatch</Code></Error>", 403
            elif self.path not in objects:
                body, status = b"<Error><Code>NoSuchKey</Code></Error>", 404
            else:
                body, status = objects[self.path], 200
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", files, seen
    server.shutdown()


def test_a_directory_and_an_archive_from_s3_give_the_same_adapter(s3_server):
    endpoint, files, seen = s3_server
    secret = {**SECRET, "AWS_ENDPOINT_URL": endpoint}
    from_dir = check(fetch_files("s3://bkt/team-a/bot/", secret))
    from_tar = check(fetch_files("s3://bkt/bot.tar.gz", secret))
    assert from_dir.packed.checksum == from_tar.packed.checksum == pack(files).checksum
    assert seen[-1]["x-amz-security-token"] == "session-tok"
    assert all(SECRET["AWS_SECRET_ACCESS_KEY"] not in str(h) for h in seen)


def test_a_wrong_key_or_a_missing_object_is_unreachable_and_says_no_secret(s3_server):
    endpoint, _, _ = s3_server
    wrong = {**SECRET, "AWS_ENDPOINT_URL": endpoint, "AWS_SECRET_ACCESS_KEY": "not-it"}
    with pytest.raises(FetchFailed) as err:
        fetch_files("s3://bkt/bot.tar.gz", wrong)
    assert err.value.problem.reason == "ArtifactUnreachable"
    assert "HTTP 403" in err.value.problem.message and "not-it" not in err.value.problem.message
    with pytest.raises(FetchFailed) as err:
        fetch_files("s3://bkt/nothing/", {**SECRET, "AWS_ENDPOINT_URL": endpoint})
    assert "HTTP 404" in err.value.problem.message
