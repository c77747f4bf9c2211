"""Tenants from API keys: the keys file shared by the router and the engine (issue 13).

The file is YAML, tenant name -> the SHA-256 hashes of its keys (never the keys), or
tenant -> {keys: [...], admin: true} for the operator's admin tenant:

    team-a:
      - sha256:5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8
    infleet-operator:
      admin: true
      keys: [sha256:...]

Mounted from a Secret, it changes in place (the kubelet swaps a symlink): `KeysFile`
reloads it when its bytes change, and keeps the last good table when a new one is
invalid, so a bad edit never locks every tenant out. Keys are plain SHA-256, not a slow
password hash: they are random tokens with full entropy, and every request checks one.

Stdlib + PyYAML only, no other infleet import: the engine and the router both read it.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger("infleet.api.tenants")
_HASH = re.compile(r"^sha256:[0-9a-f]{64}$")
_TENANT = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
DEFAULT_TENANT = "default"  # the one tenant of a service without keys


class KeysFileError(ValueError):
    """The keys file is not valid; the message names the tenant and field."""


@dataclass(frozen=True, slots=True)
class Tenant:
    name: str
    admin: bool = False


def hash_key(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def bearer_token(authorization: str | None) -> str | None:
    """The key of an `Authorization: Bearer KEY` header, else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def parse_keys(doc: Any) -> dict[str, Tenant]:
    """The keys file's content -> {key hash: tenant}."""
    if not isinstance(doc, Mapping):
        raise KeysFileError("the keys file must be a mapping of tenant name to key hashes")
    table: dict[str, Tenant] = {}
    for name, entry in doc.items():
        if not isinstance(name, str) or not _TENANT.match(name):
            raise KeysFileError(f"tenant {name!r}: not a valid name (letters, digits, . _ -)")
        admin = False
        if isinstance(entry, Mapping):
            unknown = set(entry) - {"keys", "admin"}
            if unknown:
                raise KeysFileError(f"tenant {name!r}: unknown field(s) {sorted(unknown)}")
            admin = entry.get("admin", False)
            if not isinstance(admin, bool):
                raise KeysFileError(f"tenant {name!r}: admin must be true or false")
            entry = entry.get("keys")
        if not isinstance(entry, list) or not entry:
            raise KeysFileError(f"tenant {name!r}: keys must be a non-empty list of hashes")
        for digest in entry:
            if not isinstance(digest, str) or not _HASH.match(digest):
                raise KeysFileError(
                    f"tenant {name!r}: {str(digest)[:12]!r}... is not a key hash "
                    "(sha256: and 64 lowercase hex digits; see `infleet router --hash-key`)"
                )
            if digest in table:
                raise KeysFileError(
                    f"tenant {name!r}: a key hash also belongs to {table[digest].name!r}"
                )
            table[digest] = Tenant(name, admin)
    return table


class KeysFile:
    """The keys file at `path`, reloaded by `refresh()` when its content changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._raw = path.read_bytes()
        self._table = self._parse(self._raw)

    def _parse(self, raw: bytes) -> dict[str, Tenant]:
        try:
            return parse_keys(yaml.safe_load(raw))
        except yaml.YAMLError as err:
            raise KeysFileError(f"{self.path}: not valid YAML: {err}") from None
        except KeysFileError as err:
            raise KeysFileError(f"{self.path}: {err}") from None

    def authenticate(self, key: str | None) -> Tenant | None:
        return self._table.get(hash_key(key)) if key else None

    @property
    def tenants(self) -> set[str]:
        return {t.name for t in self._table.values()}

    def refresh(self) -> bool:
        """Reload if the file's bytes changed; True when a new table took effect."""
        try:
            raw = self.path.read_bytes()
        except OSError as err:
            log.warning("keys file %s unreadable, keeping the last one: %s", self.path, err)
            return False
        if raw == self._raw:
            return False
        self._raw = raw
        try:
            self._table = self._parse(raw)
        except KeysFileError as err:
            log.error("keys file rejected, keeping the last good one: %s", err)
            return False
        log.info("keys file reloaded: %d tenants", len(self.tenants))
        return True
