"""The lora-sync sidecar's work: keep a vLLM or SGLang engine serving its service's adapters.

Those engines load adapters at run time from local paths only, and know nothing of the
operator's store or the set ConfigMap. The sidecar, in the engine's pod, bridges the two:

- the start-up read: once the engine answers its health path, every entry of the mounted
  set is downloaded from the store (digest checked, unpacked once into the shared
  `--lora-dir/<sha256>/`, which the engine mounts read-only) and loaded through the
  engine's load API; until that is done the sidecar's /ready answers 503, so the pod is
  Ready only once it serves the set (the readiness gate). When the engine stops answering
  (its container restarted: it lost every adapter) the read is done again.
- the operator's push: the sidecar answers the same adapter API as the bundled engine
  (GET /v1/models, POST /v1/load_lora_adapter with a store URL, /v1/unload_lora_adapter,
  the service's admin key as bearer), so the controller talks to every engine kind alike.

The set is read only at the start (as the bundled engine does): a running replica follows
the operator's pushes, never the mounted files, which the kubelet refreshes up to a minute
late and would bring back an adapter the operator has just unloaded.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from infleet.api.lora_set import Entry
from infleet.lora.artifact import MAX_BYTES, unpack_checked
from infleet.lora.errors import AdapterError

log = logging.getLogger(__name__)
_DIGEST = re.compile(r"/([0-9a-f]{64})\.tar$")
TIMEOUT_S = 120.0  # an engine's load reads and moves the weights


class SyncError(Exception):
    """An operation failed; `status` is the HTTP status the sidecar answers with: 400 the
    adapter is refused (by the engine, or a malformed request), 404 not loaded, 502 the
    store or the engine did not do it (tried again later)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True, slots=True)
class EngineApi:
    """Where the engine is and how its adapter API is spelled (the engine table's)."""

    url: str  # http://POD_IP:PORT
    health_path: str
    load_path: str
    unload_path: str
    api_key: str | None = None  # spec.engine.apiKeys' key, when the engine has one


@dataclass(frozen=True, slots=True)
class Loaded:
    url: str  # the store URL (what the operator pushed; its name ends in <sha256>.tar)
    tenant: str


def entries_in(set_dir: Path) -> list[Entry]:
    """The mounted set's entries (names starting with a dot are the kubelet's own)."""
    out = []
    for path in sorted(set_dir.iterdir()) if set_dir.is_dir() else []:
        if path.name.startswith(".") or not path.is_file():
            continue
        try:
            out.append(Entry.from_json(path.read_text()))
        except (OSError, ValueError, KeyError, TypeError) as err:
            log.error("adapter set entry %s unreadable: %s", path.name, err)
    return out


def _message(resp: httpx.Response) -> str:
    """The engine's reason: vLLM's {"error": {"message"}} (or {"message"}), SGLang's
    {"error_message"}, else the text."""
    try:
        body = resp.json()
    except ValueError:
        return resp.text.strip()[:500] or f"HTTP {resp.status_code}"
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        for key in ("error_message", "message", "detail"):
            if body.get(key):
                return str(body[key])
    return str(body)[:500]


class Syncer:
    def __init__(self, engine: EngineApi, set_dir: Path, lora_dir: Path) -> None:
        self.engine, self.set_dir, self.lora_dir = engine, set_dir, lora_dir
        headers = {"Authorization": f"Bearer {engine.api_key}"} if engine.api_key else {}
        self._engine_http = httpx.Client(base_url=engine.url, timeout=TIMEOUT_S, headers=headers)
        self._store_http = httpx.Client(timeout=TIMEOUT_S)
        self._lock = threading.Lock()  # one engine operation at a time
        self.loaded: dict[str, Loaded] = {}  # served name -> what this engine serves
        self.up = False  # the engine answered its health path at the last look
        self.synced = False  # the set was read into the engine since it came up

    def close(self) -> None:
        self._engine_http.close()
        self._store_http.close()

    @property
    def ready(self) -> bool:
        return self.up and self.synced

    # -- the loop's step ------------------------------------------------------------
    def tick(self) -> None:
        """Looks at the engine; after it (re)appears, reads the set into it."""
        try:
            healthy = self._engine_http.get(self.engine.health_path).status_code == 200
        except httpx.HTTPError:
            healthy = False
        with self._lock:
            if not healthy:
                if self.up:
                    log.warning("engine stopped answering: its adapters are read again")
                self.up, self.synced = False, False
                self.loaded.clear()
                return
            self.up = True
        if not self.synced:
            self.synced = self.read_set()

    def read_set(self) -> bool:
        """Loads every entry of the set; True when each is served or refused for good."""
        done = True
        for entry in entries_in(self.set_dir):
            try:
                self.load(entry.served_name, entry.url, entry.tenant)
            except SyncError as err:
                if err.status == 400:  # refused: the operator takes it out of the set
                    log.error("adapter %s of the set refused: %s", entry.served_name, err)
                else:
                    log.warning("adapter %s of the set: %s", entry.served_name, err)
                    done = False
        if done:
            log.info("the set is loaded (%d adapters)", len(self.loaded))
        return done

    # -- the adapter API ------------------------------------------------------------
    def load(self, name: str, url: str, tenant: str) -> None:
        """Makes the engine serve `url`'s adapter as `name` (replacing another artifact
        under that name)."""
        directory = self.download(url)
        with self._lock:
            have = self.loaded.get(name)
            if have is not None and have.url == url:
                return
            if have is not None:
                self._post(self.engine.unload_path, {"lora_name": name})
                del self.loaded[name]
            resp = self._post(
                self.engine.load_path, {"lora_name": name, "lora_path": str(directory)}
            )
            if resp.status_code == 400 or resp.status_code == 422:
                raise SyncError(400, _message(resp))
            if resp.status_code >= 300:
                raise SyncError(502, f"engine load: HTTP {resp.status_code}: {_message(resp)}")
            self.loaded[name] = Loaded(url, tenant)
        log.info("adapter %s loaded (%s)", name, directory.name)

    def unload(self, name: str) -> None:
        with self._lock:
            resp = self._post(self.engine.unload_path, {"lora_name": name})
            known = self.loaded.pop(name, None)
            if resp.status_code >= 500:
                raise SyncError(502, f"engine unload: HTTP {resp.status_code}: {_message(resp)}")
            if resp.status_code >= 300 and known is None:  # it had no such adapter
                raise SyncError(404, f"no adapter named {name!r} is loaded")
        log.info("adapter %s unloaded", name)

    def models(self) -> list[dict[str, Any]]:
        """vLLM's cards for the adapters this engine serves (`root`: the store URL)."""
        with self._lock:
            items = sorted(self.loaded.items())
        return [{"id": n, "object": "model", "parent": "base", "root": a.url, "owned_by": a.tenant}
                for n, a in items]  # fmt: skip

    # -- helpers ----------------------------------------------------------------------
    def _post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        try:
            return self._engine_http.post(path, json=body)
        except httpx.HTTPError as err:
            raise SyncError(502, f"engine {path}: {type(err).__name__}") from None

    def download(self, url: str) -> Path:
        """The store's adapter at `url`, unpacked under lora_dir (once per digest)."""
        match = _DIGEST.search(url.split("?", 1)[0])
        if match is None or not url.startswith(("http://", "https://")):
            raise SyncError(400, "lora_path must be a store URL ending in <sha256>.tar")
        target = self.lora_dir / match[1]
        if target.is_dir():
            return target
        try:
            with self._store_http.stream("GET", url) as resp:
                if resp.status_code != 200:
                    raise SyncError(502, f"GET {url}: HTTP {resp.status_code}")
                body = bytearray()
                for chunk in resp.iter_bytes():
                    body += chunk
                    if len(body) > MAX_BYTES:
                        raise SyncError(400, f"GET {url}: larger than {MAX_BYTES} bytes")
        except httpx.HTTPError as err:
            raise SyncError(502, f"GET {url}: {type(err).__name__}") from None
        try:
            files = unpack_checked(bytes(body), match[1])
        except AdapterError as err:  # a damaged download or store file: fetched again later
            raise SyncError(502, f"GET {url}: {err.message}") from None
        partial = Path(tempfile.mkdtemp(dir=self.lora_dir, prefix=".partial-"))
        for name, data in files.items():
            (partial / name).write_bytes(data)
            os.chmod(partial / name, 0o644)
        os.chmod(partial, 0o755)  # the engine may run as another user of the pod's group
        try:
            os.rename(partial, target)
        except OSError:  # another load of the same artifact finished first
            shutil.rmtree(partial, ignore_errors=True)
        return target
