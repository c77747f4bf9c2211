"""pvc:// uploads: the store's one-time tokens over real HTTP, and `infleet lora-upload`
(the upload Job's command) run as a process against it, from a directory and an archive.
The store takes an upload only with a live token, within the size limit, with a body that
hashes to the digest it names and holds a servable adapter; a token admits one upload."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from infleet.lora.artifact import pack
from infleet.operator.lora_store import AdapterStore
from infleet.operator.lora_uploader import TOKEN_ENV
from tests.lora.written_adapters import Base, adapter_files, targz, write_dir

SMALL = Base(hidden=64, layers=2, q=64, kv=32)
ADAPTER = ("team-a", "support-bot")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    store = AdapterStore(tmp_path_factory.mktemp("store"), "")
    server = store.serve("127.0.0.1", 0)
    store.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    yield store
    server.shutdown()


def put(store: AdapterStore, digest: str, body: bytes, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.put(f"{store.base_url}/uploads/{digest}.tar", content=body, headers=headers)


def uploader(store: AdapterStore, source, token: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    if token is not None:
        env[TOKEN_ENV] = token
    cmd = [sys.executable, "-m", "infleet", "lora-upload", "--source", str(source),
           "--store", store.base_url]  # fmt: skip
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)


def test_a_token_admits_one_upload_of_a_good_adapter(store):
    packed = pack(adapter_files(SMALL, seed=1))
    token = store.uploads.issue(ADAPTER, 3)
    assert store.uploads.pending(ADAPTER, 3)
    resp = put(store, packed.digest, packed.data, token)
    assert resp.status_code == 201, resp.text
    assert store.has(packed.digest)
    got = store.uploads.received(ADAPTER, 3)
    assert got is not None and got.fetched is not None and got.problem is None
    assert (got.fetched.packed.checksum, got.fetched.rank) == (packed.checksum, 8)
    assert store.uploads.received(ADAPTER, 4) is None  # another generation: not this one
    # Spent: the same token is refused, whatever it sends.
    again = put(store, packed.digest, packed.data, token)
    assert again.status_code == 401
    assert "not valid" in again.json()["error"]["message"]
    assert not store.uploads.pending(ADAPTER, 3)


def test_no_token_a_wrong_token_or_a_revoked_one_is_401(store):
    packed = pack(adapter_files(SMALL, seed=2))
    assert put(store, packed.digest, packed.data, None).status_code == 401
    assert put(store, packed.digest, packed.data, "guessed").status_code == 401
    old = store.uploads.issue(ADAPTER, 5)
    new = store.uploads.issue(ADAPTER, 6)  # a new generation revokes the old token
    assert put(store, packed.digest, packed.data, old).status_code == 401
    store.uploads.revoke(ADAPTER)  # the adapter deleted
    assert put(store, packed.digest, packed.data, new).status_code == 401
    assert not store.has(packed.digest)


def test_a_body_not_matching_its_digest_is_refused_and_the_token_lives(store):
    packed, other = pack(adapter_files(SMALL, seed=3)), pack(adapter_files(SMALL, seed=4))
    token = store.uploads.issue(ADAPTER, 7)
    resp = put(store, packed.digest, other.data, token)
    assert resp.status_code == 400 and "sha256" in resp.json()["error"]["message"]
    assert not store.has(packed.digest) and not store.has(other.digest)
    assert put(store, packed.digest, packed.data, token).status_code == 201


def test_an_upload_over_the_limit_is_413_before_its_body_is_read(store, monkeypatch):
    packed = pack(adapter_files(SMALL, seed=5))
    monkeypatch.setattr(store.uploads, "max_bytes", packed.size - 1)
    token = store.uploads.issue(ADAPTER, 8)
    resp = put(store, packed.digest, packed.data, token)
    assert resp.status_code == 413 and str(packed.size - 1) in resp.json()["error"]["message"]
    assert store.uploads.pending(ADAPTER, 8) and not store.has(packed.digest)


def test_a_broken_adapter_is_422_and_its_problem_waits_for_the_reconcile(store):
    files = adapter_files(SMALL, seed=6)
    files["adapter_config.json"] = b'{"peft_type": "PROMPT_TUNING"}'
    packed = pack(files)
    token = store.uploads.issue(ADAPTER, 9)
    resp = put(store, packed.digest, packed.data, token)
    assert resp.status_code == 422
    got = store.uploads.received(ADAPTER, 9)
    assert got is not None and got.fetched is None and got.problem.reason == "InvalidAdapter"
    assert not store.has(packed.digest)


@pytest.mark.parametrize("shape", ["dir", "tar.gz"])
def test_the_uploader_sends_the_canonical_tar_from_a_claim(store, tmp_path, shape):
    files = adapter_files(SMALL, seed=10)
    if shape == "dir":
        source = write_dir(tmp_path / "adapters" / "bot", files)
    else:
        source = tmp_path / "bot.tar.gz"
        source.write_bytes(targz(files))
    token = store.uploads.issue(ADAPTER, 11)
    done = uploader(store, source, token)
    assert done.returncode == 0, done.stderr
    digest = pack(files).digest  # the same checksum as any other source gives
    assert f"sha256:{digest}" in done.stdout and store.has(digest)
    assert token not in done.stdout + done.stderr
    got = store.uploads.received(ADAPTER, 11)
    assert got is not None and got.fetched.packed.digest == digest


def test_the_uploader_fails_with_a_message_naming_what_is_wrong(store, tmp_path):
    token = store.uploads.issue(ADAPTER, 12)
    missing = uploader(store, tmp_path / "nowhere", token)
    assert missing.returncode == 1 and "does not exist on the claim" in missing.stderr
    half = write_dir(tmp_path / "half", {"adapter_config.json": b"{}"})
    assert "adapter_model.safetensors is missing" in uploader(store, half, token).stderr
    no_token = uploader(store, write_dir(tmp_path / "ok", adapter_files(SMALL)), None)
    assert no_token.returncode == 1 and TOKEN_ENV in no_token.stderr
    wrong = uploader(store, tmp_path / "ok", "not-the-token")
    assert wrong.returncode == 1 and "HTTP 401" in wrong.stderr
    assert store.uploads.pending(ADAPTER, 12)  # nothing it sent spent the token
