"""A Secret's stringData is merged into data (base64) and not stored, as the apiserver does."""

from __future__ import annotations

import base64

from tests.localplane.harness import RunningPlane


def test_string_data_lands_in_data(plane: RunningPlane):
    plane.apply({"apiVersion": "v1", "kind": "Secret",
                 "metadata": {"name": "s", "namespace": "default"},
                 "data": {"a": base64.b64encode(b"1").decode()},
                 "stringData": {"b": "two", "a": "one"}})  # fmt: skip
    secret = plane.get("secret", "s", "-n", "default")
    assert "stringData" not in secret and secret["type"] == "Opaque"
    decoded = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert decoded == {"a": "one", "b": "two"}  # stringData wins, as in Kubernetes
