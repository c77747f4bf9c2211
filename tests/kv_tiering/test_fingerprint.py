"""Model fingerprints: the same model gives the same one; any change that alters KV bytes
gives another."""

from __future__ import annotations

from infleet.kv_tiering import model_fingerprint


def write(path, data: bytes):
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    return path


def test_fingerprints_follow_config_weights_and_extra(tmp_path):
    config = {"num_layers": 2, "rope_theta": 10000.0}
    big = bytes(range(256)) * 16384  # 4 MiB: sampled at both ends
    w = write(tmp_path / "model.safetensors", big)
    base = model_fingerprint(config, [w])
    assert len(base) == 32
    assert model_fingerprint(dict(reversed(config.items())), [w]) == base  # key order
    assert model_fingerprint(config | {"rope_theta": 5e5}, [w]) != base
    assert model_fingerprint(config, [w], extra=b"fp8 scales") != base
    head = write(tmp_path / "head" / "model.safetensors", b"\x01" + big[1:])
    tail = write(tmp_path / "tail" / "model.safetensors", big[:-1] + b"\x01")
    assert model_fingerprint(config, [head]) != base
    assert model_fingerprint(config, [tail]) != base
    shard = write(tmp_path / "model-2.safetensors", b"second shard")
    assert model_fingerprint(config, [w, shard]) == model_fingerprint(config, [shard, w])
    assert model_fingerprint(config, [w, shard]) != base
