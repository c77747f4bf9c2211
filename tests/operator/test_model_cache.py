"""The shared model cache: the fetch a pod runs with `model.cache`, run here as the process
kubelet runs it (KServe's storage initializer code, credentials from env): the first pod
downloads, the next finds the copy, and pods racing for it never mix their files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from infleet.api import ModelSpec
from infleet.localplane.container import rewrite_paths
from infleet.localplane.images import image_paths
from infleet.operator.model_source import COMPLETE, resolve_model
from tests.operator.model_server import GatedModelServer

pytest.importorskip("kserve_storage", reason="scripts/setup.sh installs kserve-storage")


def fetch(
    tmp: Path, container: dict, cache: Path, pod: str, token: str
) -> subprocess.CompletedProcess:
    paths = image_paths(container["image"], tmp) | {"/mnt/model-cache": str(cache)}
    argv = [rewrite_paths(a, paths) for a in [*container["command"], *container["args"]]]
    env = {**os.environ, "POD_NAME": pod, "BEARER_TOKEN": token}
    for var in container["env"]:
        if "value" in var:  # what the kubelet's $(VAR) expansion makes of the header
            env[var["name"]] = var["value"].replace("$(BEARER_TOKEN)", token)
    argv[0] = sys.executable if argv[0] == "python3" else argv[0]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)


def test_the_second_pod_finds_the_copy_and_racing_pods_leave_one(tmp_path):
    payload = tmp_path / "model.gguf"
    payload.write_bytes(os.urandom(1 << 20))
    with GatedModelServer(payload, "t0ken") as server:
        uri = f"http://localhost:{server.port}/model.gguf"
        model = ModelSpec(
            uri=uri, credentialsSecretRef={"name": "s"}, cache={"hostPath": {"path": "/x"}}
        )
        source = resolve_model(model)
        (container,) = source.init_containers
        folder = source.mounts[0]["subPath"]
        cache = tmp_path / "cache"
        with ThreadPoolExecutor(3) as pool:
            runs = list(
                pool.map(lambda i: fetch(tmp_path, container, cache, f"pod-{i}", "t0ken"), range(3))
            )
        assert [r.returncode for r in runs] == [0, 0, 0], [r.stderr for r in runs]
        assert sorted(p.name for p in cache.iterdir()) == [folder]  # no partial folder left
        assert (cache / folder / "model.gguf").read_bytes() == payload.read_bytes()
        assert (cache / folder / COMPLETE).exists()
        downloads = server.served
        again = fetch(tmp_path, container, cache, "pod-late", "t0ken")
        assert again.returncode == 0 and "model found in the cache" in again.stdout
        assert server.served == downloads  # nothing downloaded again
        refused = fetch(tmp_path, container, tmp_path / "other", "pod-x", "wrong")
        assert refused.returncode != 0 and "returned a 401" in refused.stderr + refused.stdout
        assert server.refused == 1 and not json.dumps(refused.args).count("t0ken")
