"""The operator's two small stdlib HTTP servers (the adapter store, the lora-sync sidecar):
one JSON answer and one way to serve in a daemon thread."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def send_json(
    handler: BaseHTTPRequestHandler, status: int, body: Any, *, close: bool = False
) -> None:
    """`body` as JSON. `close`: end the connection after it (an error answered before the
    request body was read: the rest of it must not be taken for the next request)."""
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    if close:
        handler.send_header("Connection", "close")
        handler.close_connection = True
    handler.end_headers()
    handler.wfile.write(data)


def serve_in_thread(
    handler: type[BaseHTTPRequestHandler], host: str, port: int, name: str
) -> ThreadingHTTPServer:
    """A threading server on (host, port), served by a daemon thread; `.shutdown()` stops."""
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name=name, daemon=True).start()
    return server
