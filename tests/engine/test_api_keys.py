"""The engine's tenant keys file: hashes only, read again when it changes, the last good
map kept when it breaks or vanishes (a kubelet swaps a ConfigMap volume by renaming)."""

from __future__ import annotations

import json
import os

from infleet.engine.adapters.keys import ApiKeys, key_hash


def write(path, mapping, stamp: int) -> None:
    path.write_text(json.dumps({key_hash(k): t for k, t in mapping.items()}))
    os.utime(path, ns=(stamp, stamp))


def test_keys_map_to_tenants_and_follow_the_file(tmp_path):
    path = tmp_path / "keys.json"
    write(path, {"ka": "team-a"}, 1_000_000_000)
    keys = ApiKeys(path)
    assert keys.tenant("ka") == "team-a" and keys.tenant("kb") is None and keys.tenant("") is None
    write(path, {"ka": "team-a", "kb": "team-b"}, 2_000_000_000)
    assert keys.tenant("kb") == "team-b"
    path.write_text("{broken")
    os.utime(path, ns=(3_000_000_000, 3_000_000_000))
    assert keys.tenant("kb") == "team-b"  # the last good map
    path.unlink()
    assert keys.tenant("ka") == "team-a"
    assert "ka" not in json.dumps(keys._tenants)  # only hashes are held
