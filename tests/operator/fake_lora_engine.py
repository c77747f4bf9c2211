"""A fake vLLM / SGLang engine for the lora-sync tests: a real HTTP server with their
adapter API (load from a local directory, unload, /v1/models, /health), their status codes
and error shapes, and a restart that loses every adapter, as a restarted container does."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from infleet.lora.artifact import CONFIG_FILE, WEIGHTS_FILE

PATHS = {
    "vllm": ("/v1/load_lora_adapter", "/v1/unload_lora_adapter"),
    "sglang": ("/load_lora_adapter", "/unload_lora_adapter"),
}


@dataclass
class FakeEngine:
    flavour: str  # vllm | sglang
    max_rank: int = 16
    api_key: str | None = None
    up: bool = True
    adapters: dict[str, Path] = field(default_factory=dict)  # name -> the directory it read
    calls: list[str] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def restart(self) -> None:
        """Down, and every adapter gone (call `up = True` to bring it back)."""
        self.up = False
        self.adapters.clear()

    def start(self) -> FakeEngine:
        engine = self
        load_path, unload_path = PATHS[self.flavour]

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/health":
                    self._send(200 if engine.up else 503, {})
                elif self.path == "/v1/models" and self._auth():
                    cards = [{"id": "base", "object": "model"}]
                    cards += [{"id": n, "parent": "base", "root": str(p)}
                              for n, p in engine.adapters.items()]  # fmt: skip
                    self._send(200, {"object": "list", "data": cards})

            def do_POST(self) -> None:
                if not engine.up:
                    self._send(503, {})
                    return
                if not self._auth():
                    return
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                name = body["lora_name"]
                engine.calls.append(f"{self.path} {name}")
                if self.path == load_path:
                    self._load(name, Path(body["lora_path"]))
                elif self.path == unload_path:
                    if engine.adapters.pop(name, None) is None:
                        self._fail(404 if engine.flavour == "vllm" else 400, f"{name} not found")
                    else:
                        self._send(200, {"success": True})
                else:
                    self._send(404, {})

            def _load(self, name: str, path: Path) -> None:
                if name in engine.adapters:
                    return self._fail(400, f"The lora adapter '{name}' has already been loaded.")
                if not (path / CONFIG_FILE).is_file() or not (path / WEIGHTS_FILE).is_file():
                    return self._fail(400, f"no adapter at {path}")
                rank = json.loads((path / CONFIG_FILE).read_text())["r"]
                if rank > engine.max_rank:
                    return self._fail(
                        400, f"LoRA rank {rank} is greater than max_lora_rank {engine.max_rank}."
                    )
                engine.adapters[name] = path
                self._send(200, {"success": True})

            def _auth(self) -> bool:
                if (
                    engine.api_key
                    and self.headers.get("Authorization") != f"Bearer {engine.api_key}"
                ):
                    self._send(401, {"error": "Unauthorized"})
                    return False
                return True

            def _fail(self, status: int, message: str) -> None:
                if engine.flavour == "vllm":
                    self._send(status, {"error": {"message": message, "type": "BadRequestError"}})
                else:
                    self._send(status, {"success": False, "error_message": message})

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, fmt: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
