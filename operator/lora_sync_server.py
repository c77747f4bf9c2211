"""`infleet lora-sync`: the sidecar of a vLLM or SGLang engine pod (operator/lora_sync.py).

Serves, on its own port (named `lora-sync` in the pod, which the controller prefers over
the engine's): /ready (the pod's readiness gate: 200 once the engine serves the set),
/health (liveness), and, with the service's admin key ($INFLEET_ADMIN_API_KEY) as
bearer, the bundled engine's adapter API: GET /v1/models, POST /v1/load_lora_adapter
{lora_name, lora_path: a store URL, tenant}, POST /v1/unload_lora_adapter {lora_name}.
Errors are OpenAI-shaped. Keys come from the environment, never from flags (flags show
in `ps` and pod specs).
"""

from __future__ import annotations

import argparse
import hmac
import json
import logging
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from infleet.operator.admin_key import ADMIN_KEY_ENV
from infleet.operator.json_http import send_json, serve_in_thread
from infleet.operator.lora_names import ENGINE_KEY_ENV
from infleet.operator.lora_sync import EngineApi, Syncer, SyncError

log = logging.getLogger(__name__)
TICK_S = 2.0
_CODES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error"}


def serve(syncer: Syncer, admin_key: str | None, host: str, port: int) -> ThreadingHTTPServer:
    """The sidecar's HTTP API in a daemon thread; returns the server (`.shutdown()`)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/health":
                self._send(200, {"status": "ok"})
            elif self.path == "/ready":
                ok = syncer.ready
                self._send(200 if ok else 503, {"ready": ok, "engine_up": syncer.up})
            elif self.path != "/v1/models":
                self._error(404, f"no route {self.path}")
            elif self._authorized():
                self._send(200, {"object": "list", "data": syncer.models()})

        def do_POST(self) -> None:
            if self.path not in ("/v1/load_lora_adapter", "/v1/unload_lora_adapter"):
                self._error(404, f"no route {self.path}")
                return
            if not self._authorized():
                return
            try:
                body = self._json()
                name = _field(body, "lora_name")
                if self.path == "/v1/load_lora_adapter":
                    tenant = body.get("tenant") or ""
                    syncer.load(name, _field(body, "lora_path"), str(tenant))
                    self._send(200, {"status": "ok", "message": f"adapter {name} loaded"})
                else:
                    syncer.unload(name)
                    self._send(200, {"status": "ok", "message": f"adapter {name} unloaded"})
            except SyncError as err:
                self._error(err.status, err.message)

        def _authorized(self) -> bool:
            sent = self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            if admin_key and hmac.compare_digest(sent.encode(), admin_key.encode()):
                return True
            self._error(401, "the service's admin key is required")
            return False

        def _json(self) -> dict[str, Any]:
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                raise SyncError(400, "the body is not JSON") from None
            if not isinstance(body, dict):
                raise SyncError(400, "the body must be a JSON object")
            return body

        def _error(self, status: int, message: str) -> None:
            kind = _CODES.get(status, "api_error")
            self._send(status, {"error": {"message": message, "type": kind, "code": status}})

        def _send(self, status: int, body: dict[str, Any]) -> None:
            send_json(self, status, body)

        def log_message(self, fmt: str, *args: object) -> None:
            log.debug("lora-sync: " + fmt, *args)

    return serve_in_thread(Handler, host, port, "lora-sync-api")


def _field(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise SyncError(400, f"{name} is required (a string)")
    return value


def run_loop(syncer: Syncer, stop: threading.Event, tick_s: float = TICK_S) -> None:
    while not stop.is_set():
        try:
            syncer.tick()
        except Exception:  # a bad tick must not end the sidecar; the next one retries
            log.exception("lora-sync tick")
        stop.wait(tick_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="infleet lora-sync", description=__doc__.split("\n")[0])
    parser.add_argument("--engine-url", required=True, help="http://POD_IP:PORT of the engine")
    parser.add_argument("--health-path", default="/health")
    parser.add_argument("--load-path", required=True, help="the engine's load API path")
    parser.add_argument("--unload-path", required=True, help="the engine's unload API path")
    parser.add_argument("--set-dir", type=Path, required=True, help="the mounted set ConfigMap")
    parser.add_argument("--lora-dir", type=Path, required=True, help="shared with the engine")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8091)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    admin_key = os.environ.get(ADMIN_KEY_ENV)
    if not admin_key:
        parser.error(f"${ADMIN_KEY_ENV} is not set: the operator's pushes could not be checked")
    args.lora_dir.mkdir(parents=True, exist_ok=True)
    engine = EngineApi(args.engine_url.rstrip("/"), args.health_path, args.load_path,
                       args.unload_path, os.environ.get(ENGINE_KEY_ENV) or None)  # fmt: skip
    syncer = Syncer(engine, args.set_dir, args.lora_dir)
    server = serve(syncer, admin_key, args.host, args.port)
    log.info("lora-sync on port %d for %s", server.server_address[1], engine.url)
    stop = threading.Event()
    try:
        run_loop(syncer, stop)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        server.shutdown()
        syncer.close()
    return 0
