"""The operator's adapter store: checked artifacts by sha256, served read-only over HTTP.

The replicas download adapters from here (at start-up and when the operator pushes one),
never from the tenant's source: they hold no tenant credentials. A file's name is its
digest and the engine verifies the digest, so what an engine serves is exactly what the
operator checked. The store is a cache: the leader fills it on reconcile, and a new
leader (an empty store) fetches again and points the set at its own address.

GET /adapters/<sha256 hex>.tar answers only digests in the store (404 otherwise) and lists
nothing. Whoever can reach the port and knows a digest can read that adapter; restricting
the port to the engine pods is the platform's NetworkPolicy (docs/lora-onboarding.md).
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from infleet.lora.artifact import PackedAdapter

log = logging.getLogger(__name__)
_PATH = re.compile(r"^/adapters/([0-9a-f]{64})\.tar$")


class AdapterStore:
    def __init__(self, root: Path, base_url: str) -> None:
        self.root, self.base_url = root, base_url.rstrip("/")
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

            def log_message(self, fmt: str, *args: object) -> None:
                log.debug("adapter store: " + fmt, *args)

        server = ThreadingHTTPServer((host, port), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name="adapter-store", daemon=True).start()
        return server


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
