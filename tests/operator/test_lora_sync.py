"""The lora-sync sidecar against a fake vLLM / SGLang engine that is a real HTTP server,
with adapters served by the operator's real store and pushed by the operator's real
engine client: the start-up read gates readiness, pushes load and unload, a restarted
engine is caught up, and what the engine refuses is refused with its message."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from infleet.api.lora_set import Entry
from infleet.lora.artifact import pack
from infleet.operator.lora_engines import EngineClient, LoadRefused, Replica, ready_replicas
from infleet.operator.lora_store import AdapterStore
from infleet.operator.lora_sync import EngineApi, Syncer
from infleet.operator.lora_sync_server import serve
from infleet.operator.render import render_children
from tests.lora.written_adapters import Base, adapter_files
from tests.operator.fake_lora_engine import PATHS, FakeEngine
from tests.operator.samples import engine_isvc

SMALL = Base(hidden=64, layers=2, q=64, kv=32)
ADMIN = "admin-key-of-the-service"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    store = AdapterStore(tmp_path_factory.mktemp("store"), "")
    server = store.serve("127.0.0.1", 0)
    store.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    yield store
    server.shutdown()


def stored(store: AdapterStore, rank: int = 8, seed: int = 0) -> str:
    packed = pack(adapter_files(SMALL, rank=rank, seed=seed))
    store.put(packed)
    return store.url(packed.digest)


def write_set(set_dir: Path, entries: dict[str, Entry]) -> None:
    set_dir.mkdir(parents=True, exist_ok=True)
    for key, entry in entries.items():
        (set_dir / key).write_text(entry.to_json())


@pytest.fixture
def sidecar(tmp_path, request):
    """(engine, syncer, replica URL): the sidecar's API served, its loop driven by tick()."""
    flavour, engine_key = request.param
    engine = FakeEngine(flavour, api_key=engine_key).start()
    load, unload = PATHS[flavour]
    api = EngineApi(engine.url, "/health", load, unload, engine_key)
    syncer = Syncer(api, tmp_path / "set", tmp_path / "lora")
    (tmp_path / "lora").mkdir()
    server = serve(syncer, ADMIN, "127.0.0.1", 0)
    yield engine, syncer, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    syncer.close()
    engine.stop()


def ready(url: str) -> int:
    return httpx.get(f"{url}/ready").status_code


@pytest.mark.parametrize("sidecar", [("vllm", "engine-key"), ("sglang", None)], indirect=True)
def test_start_up_read_gates_readiness_and_pushes_load_and_unload(sidecar, store, tmp_path):
    engine, syncer, url = sidecar
    first, second = stored(store, seed=1), stored(store, seed=2)
    write_set(tmp_path / "set", {"team-a.bot": Entry("bot", first, first[-68:-4], "team-a")})
    engine.up = False
    syncer.tick()
    assert ready(url) == 503 and engine.adapters == {}
    engine.up = True
    syncer.tick()
    assert ready(url) == 200
    # The engine read the files the store holds, from the shared directory.
    assert engine.adapters["bot"] == tmp_path / "lora" / first[-68:-4]
    assert (engine.adapters["bot"] / "adapter_config.json").is_file()

    client, replica = EngineClient(ADMIN), Replica("pod-0", url)
    assert client.adapters(replica) == {"bot": first}
    assert client.load(replica, "helper", second, "team-b")
    assert set(engine.adapters) == {"bot", "helper"}
    assert client.adapters(replica) == {"bot": first, "helper": second}
    # Pushing what it serves again loads nothing more.
    calls = len(engine.calls)
    assert client.load(replica, "helper", second, "team-b") and len(engine.calls) == calls
    assert client.unload(replica, "helper") and "helper" not in engine.adapters
    assert client.unload(replica, "helper")  # already gone: 404, which is fine
    # Without the admin key the sidecar answers nothing about adapters.
    stranger = EngineClient("not-the-key")
    assert stranger.adapters(replica) is None
    assert not stranger.load(replica, "x", second, "team-c") and "x" not in engine.adapters
    for c in (client, stranger):
        c.close()


@pytest.mark.parametrize("sidecar", [("vllm", None)], indirect=True)
def test_what_the_engine_refuses_is_refused_with_its_message(sidecar, store, tmp_path):
    engine, syncer, url = sidecar
    too_big = stored(store, rank=32, seed=3)
    client = EngineClient(ADMIN)
    with pytest.raises(LoadRefused, match="greater than max_lora_rank 16"):
        client.load(Replica("pod-0", url), "big", too_big, "team-a")
    resp = httpx.post(f"{url}/v1/load_lora_adapter", json={"lora_name": "x"},
                      headers={"Authorization": f"Bearer {ADMIN}"})  # fmt: skip
    assert resp.status_code == 400 and "lora_path" in resp.json()["error"]["message"]
    client.close()
    # In the set, a refused entry does not hold the pod back (the operator removes it);
    # one the store cannot serve does, until it can.
    missing = f"{store.base_url}/adapters/{'0' * 64}.tar"
    write_set(tmp_path / "set", {"team-a.big": Entry("big", too_big, too_big[-68:-4], "team-a")})
    syncer.tick()
    assert ready(url) == 200 and engine.adapters == {}
    syncer.synced = False
    write_set(tmp_path / "set", {"team-a.gone": Entry("gone", missing, "0" * 64, "team-a")})
    syncer.tick()
    assert ready(url) == 503


@pytest.mark.parametrize("sidecar", [("vllm", None)], indirect=True)
def test_a_restarted_engine_gets_the_set_again_before_the_pod_is_ready(sidecar, store, tmp_path):
    engine, syncer, url = sidecar
    first = stored(store, seed=4)
    write_set(tmp_path / "set", {"team-a.bot": Entry("bot", first, first[-68:-4], "team-a")})
    syncer.tick()
    assert ready(url) == 200 and "bot" in engine.adapters
    engine.restart()  # the engine container restarted: no adapters
    syncer.tick()
    assert ready(url) == 503
    engine.up = True
    syncer.tick()
    assert ready(url) == 200 and "bot" in engine.adapters


def test_the_cli_serves_the_set_to_sglang(store, tmp_path):
    """`infleet lora-sync` as the pod runs it: flags from the engine table, keys from env."""
    engine = FakeEngine("sglang", api_key="k").start()
    first = stored(store, seed=5)
    write_set(tmp_path / "set", {"team-a.bot": Entry("bot", first, first[-68:-4], "team-a")})
    load, unload = PATHS["sglang"]
    env = {**os.environ, "INFLEET_ADMIN_API_KEY": ADMIN, "INFLEET_ENGINE_API_KEY": "k"}
    with socket.socket() as probe:  # a free port, given to the sidecar
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "infleet", "lora-sync", f"--engine-url={engine.url}",
         f"--load-path={load}", f"--unload-path={unload}", f"--set-dir={tmp_path / 'set'}",
         f"--lora-dir={tmp_path / 'lora'}", "--host=127.0.0.1", f"--port={port}"],
        env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if ready(f"http://127.0.0.1:{port}") == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        assert ready(f"http://127.0.0.1:{port}") == 200
        assert "bot" in engine.adapters
    finally:
        proc.terminate()
        proc.wait(10)
        engine.stop()


@pytest.mark.parametrize("kind,url", [("vllm", "http://10.0.0.7:8091"),
                                      ("infleet", "http://10.0.0.7:8000")])  # fmt: skip
def test_the_controller_pushes_to_the_sidecar_where_the_pod_has_one(kind, url):
    isvc = engine_isvc(kind, "dedicated-only", engine={"lora": {"maxAdapters": 2}})
    dep = next(c for c in render_children(isvc) if c["kind"] == "Deployment")
    pod = {
        "metadata": {"name": "chat-0", **dep["spec"]["template"]["metadata"]},
        "spec": {**dep["spec"]["template"]["spec"], "nodeName": "n1"},
        "status": {"podIP": "10.0.0.7", "conditions": [{"type": "Ready", "status": "True"}]},
    }
    assert ready_replicas([pod]) == [Replica("chat-0", url)]
