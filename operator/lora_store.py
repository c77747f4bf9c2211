"""The operator's adapter store: checked artifacts by sha256, served read-only over HTTP.

The replicas download adapters from here (at start-up and when the operator pushes one),
never from the tenant's source: they hold no tenant credentials. A file's name is its
digest and the engine verifies the digest, so what an engine serves is exactly what the
operator checked. The store is a cache: the leader fills it on reconcile, and a new
leader (an empty store) fetches again and points the set at its own address.

GET /adapters/<sha256 hex>.tar answers only digests in the store (404 otherwise) and lists
nothing. Whoever can reach the port and knows a digest can read that adapter; restricting
the port to the engine pods is the platform's NetworkPolicy (docs/lora-onboarding.md).

PUT /uploads/<sha256 hex>.tar (`Authorization: Bearer TOKEN`) is how a pvc:// adapter's
upload Job delivers it: only with a one-time token the controller issued for that adapter
(operator/lora_upload.py), within the size limit, with a body whose sha256 is the named
digest and that is a servable adapter; 201 then, else 401/411/413/400/422 with a message.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO

from infleet.lora.artifact import PackedAdapter
from infleet.operator.json_http import send_json, serve_in_thread
from infleet.operator.lora_upload import UploadGrants, UploadRefused

log = logging.getLogger(__name__)
_PATH = re.compile(r"^/adapters/([0-9a-f]{64})\.tar$")
_UPLOAD = re.compile(r"^/uploads/([0-9a-f]{64})\.tar$")


class AdapterStore:
    def __init__(self, root: Path, base_url: str) -> None:
        self.root, self.base_url = root, base_url.rstrip("/")
        self.uploads = UploadGrants()
        root.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        return self.root / f"{digest}.tar"

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def put(self, packed: PackedAdapter) -> None:
        """Stores it atomically (a reader never sees half a file)."""
        if self.has(packed.digest):
            return
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".partial-")
        with os.fdopen(fd, "wb") as f:
            f.write(packed.data)
        os.replace(tmp, self.path(packed.digest))

    def url(self, digest: str) -> str:
        return f"{self.base_url}/adapters/{digest}.tar"

    def receive(self, path: str, headers: Any, body: BinaryIO) -> None:
        """One upload (PUT /uploads/<sha256>.tar): checked by the grants, then stored.
        The token and size are checked before the body is read."""
        match = _UPLOAD.match(path)
        if match is None:
            raise UploadRefused(404, "uploads go to /uploads/<sha256>.tar")
        auth = headers.get("Authorization") or ""
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""
        self.uploads.grant_of(token)
        length = headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise UploadRefused(411, "an upload needs a Content-Length")
        self.uploads.check_size(int(length))
        fetched = self.uploads.accept(token, match[1], body.read(int(length)))
        self.put(fetched.packed)

    def serve(self, host: str, port: int) -> ThreadingHTTPServer:
        """Serves the store in a daemon thread; returns the server (`.shutdown()` stops)."""
        store = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                match = _PATH.match(self.path)
                if match is None or not store.has(match[1]):
                    self.send_error(404)
                    return
                data = store.path(match[1]).read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-tar")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self) -> None:
                try:
                    store.receive(self.path, self.headers, self.rfile)
                except UploadRefused as err:
                    self._answer(err.status, {"error": {"message": str(err)}})
                    return
                self._answer(201, {"stored": True})

            def _answer(self, status: int, body: dict[str, object]) -> None:
                send_json(self, status, body, close=status >= 400)  # the body may be unread

            def log_message(self, fmt: str, *args: object) -> None:
                log.debug("adapter store: " + fmt, *args)

        return serve_in_thread(Handler, host, port, "adapter-store")


def open_store(root: Path | None, port: int) -> AdapterStore:
    """The store, served on $POD_IP (else loopback) at `port`, or at any free port when
    that one is taken (two operators on one machine); its URLs name the bound address."""
    host = os.environ.get("POD_IP") or "127.0.0.1"
    directory = root or Path(tempfile.mkdtemp(prefix="infleet-adapters-"))
    store = AdapterStore(directory, "")
    try:
        server = store.serve(host, port)
    except OSError as err:
        log.warning("adapter store: port %d: %s; using any free port", port, err.strerror)
        server = store.serve(host, 0)
    bound = server.server_address[1]
    store.base_url = f"http://{host}:{bound}" if ":" not in host else f"http://[{host}]:{bound}"
    log.info("adapter store at %s (%s)", store.base_url, directory)
    return store
