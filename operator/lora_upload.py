"""One-time upload tokens for pvc:// adapters: what the store accepts, and from whom.

A claim can be read only by a pod of its own namespace, so for a `pvc://` adapter the
controller runs an upload Job in the tenant's namespace (operator/lora_pvc_job.py) that
sends the canonical tar to the store. The store must tell that Job from any other pod
that can reach it, so each Job gets a token: 32 random bytes, issued per adapter and
generation, handed over in a Secret the adapter owns, and held here only as its sha256.
A token is spent by the one upload it admits (so it authorizes exactly one digest), and
revoked when the adapter gets a new one (a new generation) or is deleted.

The store checks, before anything reaches its disk: the token, the size (announced and
read), that the body's sha256 is the digest the upload names, and that the tar holds a
servable adapter (lora/artifact.py, operator/lora_artifact.py's `check`). What it received
(or why it refused a body that a valid token sent) waits here for the adapter's reconcile.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from dataclasses import dataclass

from infleet.lora import artifact
from infleet.lora.errors import AdapterError
from infleet.operator.lora_artifact import Fetched, FetchFailed, check
from infleet.operator.status import Problem

Key = tuple[str, str]  # the adapter's (namespace, name)


@dataclass(frozen=True, slots=True)
class Grant:
    adapter: Key
    generation: int | None


@dataclass(frozen=True, slots=True)
class Received:
    generation: int | None
    fetched: Fetched | None  # None: refused, `problem` says why
    problem: Problem | None = None


class UploadRefused(Exception):
    """An upload the store does not take: `status` is the HTTP code to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class UploadGrants:
    def __init__(self, max_bytes: int = artifact.MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._grants: dict[str, Grant] = {}  # sha256(token) -> grant
        self._received: dict[Key, Received] = {}
        self._lock = threading.Lock()

    def issue(self, adapter: Key, generation: int | None) -> str:
        """A new token for `adapter` at `generation`; any earlier one of it is revoked."""
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._drop(adapter)
            self._grants[_hash(token)] = Grant(adapter, generation)
        return token

    def revoke(self, adapter: Key) -> None:
        with self._lock:
            self._drop(adapter)
            self._received.pop(adapter, None)

    def pending(self, adapter: Key, generation: int | None) -> bool:
        """Whether a token of `adapter` at `generation` waits for its upload."""
        with self._lock:
            return Grant(adapter, generation) in self._grants.values()

    def received(self, adapter: Key, generation: int | None) -> Received | None:
        with self._lock:
            got = self._received.get(adapter)
        return got if got is not None and got.generation == generation else None

    def _drop(self, adapter: Key) -> None:
        for hashed in [h for h, g in self._grants.items() if g.adapter == adapter]:
            del self._grants[hashed]

    def grant_of(self, token: str) -> Grant:
        """The grant `token` holds; 401 when none (unknown, spent or revoked)."""
        hashed = _hash(token)
        with self._lock:
            for known, grant in self._grants.items():
                if hmac.compare_digest(known, hashed):
                    return grant
        raise UploadRefused(401, "the upload token is not valid (unknown, spent or revoked)")

    def check_size(self, length: int) -> None:
        if length > self.max_bytes:
            raise UploadRefused(413, f"the artifact is larger than {self.max_bytes} bytes")

    def accept(self, token: str, digest: str, body: bytes) -> Fetched:
        """Checks an upload of `body` named `digest` (sha256 hex) under `token`; spends the
        token and returns the checked adapter, or raises UploadRefused. A body that fails
        the adapter checks spends the token too, and its problem waits for the reconcile
        (the Job cannot do better by trying again)."""
        grant = self.grant_of(token)
        self.check_size(len(body))
        actual = hashlib.sha256(body).hexdigest()
        if actual != digest:
            raise UploadRefused(400, f"the body's sha256 is {actual}, the upload names {digest}")
        try:
            try:
                files = artifact.unpack(body, self.max_bytes)
            except AdapterError as err:
                raise FetchFailed("InvalidAdapter", err.message) from None
            fetched = check(files)
            if fetched.packed.digest != digest:  # not canonical: the engines would refuse it
                raise FetchFailed("InvalidAdapter", "the upload is not the adapter's canonical tar")
        except FetchFailed as err:
            self._settle(token, grant, Received(grant.generation, None, err.problem))
            raise UploadRefused(422, err.problem.message) from None
        self._settle(token, grant, Received(grant.generation, fetched))
        return fetched

    def _settle(self, token: str, grant: Grant, received: Received) -> None:
        with self._lock:
            if self._grants.pop(_hash(token), None) is None:
                raise UploadRefused(401, "the upload token was spent meanwhile")
            self._received[grant.adapter] = received
