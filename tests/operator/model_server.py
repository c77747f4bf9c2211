"""A model store on this machine that demands a bearer token (tests of the model fetch)."""

from __future__ import annotations

import http.server
import mimetypes
import threading
from pathlib import Path
from typing import Any


class GatedModelServer:
    """Serves one file to requests bearing the token; 401 to the rest. Counts both."""

    def __init__(self, path: Path, token: str) -> None:
        self.path, self.token = path, token
        self.served, self.refused = 0, 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.headers.get("Authorization") != f"Bearer {outer.token}":
                    outer.refused += 1
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                outer.served += 1
                data = outer.path.read_bytes()
                self.send_response(200)
                # KServe's fetch unpacks an archive only when its type says so.
                kind = mimetypes.guess_type(outer.path.name)[0]
                if kind not in ("application/x-tar", "application/zip"):
                    kind = "application/octet-stream"
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> GatedModelServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
