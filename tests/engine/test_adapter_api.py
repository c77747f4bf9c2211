"""The bundled engine's adapter API: the set read before it listens, vLLM's load/unload
endpoints with the admin key and lora/'s checks, the model list, and what a request for
an adapter gets (404 unknown or another tenant's; the adapter's own tokens when loaded)."""

from __future__ import annotations

import re

import httpx
import pytest
import yaml

from infleet.api import router_wire as wire
from infleet.api.lora_set import Entry
from infleet.api.tenants import hash_key
from infleet.lora.artifact import pack
from infleet.operator.lora_store import AdapterStore
from tests.engine.serving import SMOLLM2, ServerThread, smollm2_engine
from tests.engine.test_router_feed import Follower
from tests.lora.reference import adapter_text, completion_body
from tests.lora.written_adapters import OTHER, adapter_files, write_dir

B_STD = 0.02  # adapters that change SmolLM2's tokens (a zero B would change nothing)
ADMIN = "admin-key-for-tests"
KEYS = {"team-a": "key-of-team-a", "team-b": "key-of-team-b"}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = AdapterStore(tmp_path_factory.mktemp("store"), "")
    server = s.serve("127.0.0.1", 0)
    s.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    yield s
    server.shutdown()


def stored(store: AdapterStore, **kw) -> str:
    packed = pack(adapter_files(**kw))
    store.put(packed)
    return store.url(packed.digest)


@pytest.fixture(scope="module")
def server(store, tmp_path_factory):
    root = tmp_path_factory.mktemp("engine")
    set_dir = root / "set"
    set_dir.mkdir()
    entry = Entry("from-the-set", stored(store, seed=1), "unused", "team-a")
    (set_dir / "team-a.from-the-set").write_text(entry.to_json())
    (set_dir / "..data").mkdir()  # the kubelet's own entries are not adapters
    (set_dir / "team-b.broken").write_text("{not json")
    keys = root / "keys.yaml"  # api/tenants.py's format, as the operator writes it
    keys.write_text(yaml.safe_dump({t: [hash_key(k)] for t, k in KEYS.items()}))
    engine = smollm2_engine(
        enable_lora=True,
        max_lora_rank=16,
        lora_dir=str(root / "lora"),
        lora_set=str(set_dir),
        api_keys_file=str(keys),
        admin_api_key=ADMIN,
    )
    with ServerThread(engine) as s:
        yield s


def auth(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


def models(server, key: str = ADMIN) -> dict[str, dict]:
    resp = httpx.get(server.url + "/v1/models", headers=auth(key))
    return {c["id"]: c for c in resp.json()["data"]}


def chat(server, model: str, key: str | None) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    return httpx.post(server.url + "/v1/chat/completions", json=body, headers=auth(key), timeout=60)


def complete(server, model: str, key: str | None) -> httpx.Response:
    body = completion_body(model)
    return httpx.post(server.url + "/v1/completions", json=body, headers=auth(key), timeout=60)


def post(server, what: str, body: dict, key: str | None = ADMIN) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/{what}", json=body, headers=auth(key), timeout=60)


def test_the_set_is_served_from_the_start(server):
    cards = models(server)
    assert cards["from-the-set"]["parent"] == SMOLLM2
    assert cards["from-the-set"]["root"].endswith(".tar")
    assert "parent" not in cards[SMOLLM2]


def test_load_list_serve_unload_and_404(server, store, tmp_path):
    url = stored(store, seed=2, b_std=B_STD)
    body = {"lora_name": "a2", "lora_path": url, "tenant": "team-a"}
    assert post(server, "load_lora_adapter", body).status_code == 200
    assert models(server)["a2"]["root"] == url
    assert post(server, "load_lora_adapter", body).status_code == 409
    applied = complete(server, "a2", KEYS["team-a"])
    assert applied.status_code == 200, applied.text
    text = applied.json()["choices"][0]["text"]
    assert text == adapter_text(adapter_files(seed=2, b_std=B_STD), tmp_path)
    assert text != complete(server, SMOLLM2, KEYS["team-a"]).json()["choices"][0]["text"]
    metrics = httpx.get(server.url + "/metrics", headers=auth(ADMIN)).text
    assert re.search(r'^infleet:lora_requests_info\{.*max_lora="4".*\} \d', metrics, re.M)
    device_loads = re.search(r'^infleet:lora_loads_total\{.*tier="device"\} (\S+)', metrics, re.M)
    assert device_loads and float(device_loads[1]) >= 1
    assert post(server, "unload_lora_adapter", {"lora_name": "a2"}).status_code == 200
    assert "a2" not in models(server)
    gone = chat(server, "a2", KEYS["team-a"])
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "model_not_found"
    assert post(server, "unload_lora_adapter", {"lora_name": "a2"}).status_code == 404


@pytest.mark.parametrize("key, status", [(None, 401), ("wrong", 401)])
def test_load_and_unload_need_the_admin_key(server, store, key, status):
    url = stored(store, seed=3)
    resp = post(server, "load_lora_adapter", {"lora_name": "x", "lora_path": url}, key=key)
    assert resp.status_code == status
    assert "x" not in models(server)
    resp = post(server, "unload_lora_adapter", {"lora_name": "from-the-set"}, key=key)
    assert resp.status_code == status and "from-the-set" in models(server)


def test_refusals_name_the_field_and_change_nothing(server, store, tmp_path):
    before = models(server)
    cases = {
        "other-base": stored(store, base=OTHER),
        "rank-32": stored(store, rank=32),
        "bad-digest": store.url("0" * 64),
        "outside": str(write_dir(tmp_path / "a", adapter_files())),
        "nan-values": stored(store, seed=9, b_std=float("nan")),
    }
    for name, path in cases.items():
        resp = post(server, "load_lora_adapter", {"lora_name": name, "lora_path": path})
        assert resp.status_code == 400, (name, resp.text)
        err = resp.json()["error"]
        assert err["param"] and err["message"], name
    assert models(server) == before


def test_a_tenant_neither_lists_nor_uses_another_tenants_adapter(server):
    assert set(models(server, KEYS["team-a"])) == {SMOLLM2, "from-the-set"}
    assert set(models(server, KEYS["team-b"])) == {SMOLLM2}
    assert chat(server, "from-the-set", KEYS["team-a"]).status_code == 200
    assert chat(server, "from-the-set", KEYS["team-b"]).status_code == 404
    assert chat(server, SMOLLM2, KEYS["team-b"]).status_code == 200
    for key in (None, "not-a-key"):
        assert chat(server, SMOLLM2, key).status_code == 401
        assert httpx.get(server.url + "/v1/models", headers=auth(key)).status_code == 401
    assert httpx.get(server.url + "/health").status_code == 200  # probes need no key


def test_without_an_admin_key_loading_is_off(store, tmp_path):
    engine = smollm2_engine(enable_lora=True, lora_dir=str(tmp_path))
    with ServerThread(engine) as s:
        resp = post(s, "load_lora_adapter", {"lora_name": "x", "lora_path": stored(store)})
        assert resp.status_code == 403


def test_a_full_engine_answers_409_and_keeps_what_it_has(store, tmp_path):
    engine = smollm2_engine(
        enable_lora=True, max_loras=1, lora_dir=str(tmp_path), admin_api_key=ADMIN
    )
    with ServerThread(engine) as s:
        first = {"lora_name": "one", "lora_path": stored(store, seed=7)}
        assert post(s, "load_lora_adapter", first).status_code == 200
        full = post(s, "load_lora_adapter", {"lora_name": "two", "lora_path": stored(store)})
        assert full.status_code == 409 and full.json()["error"]["code"] == "adapter_limit"
        assert set(models(s)) == {SMOLLM2, "one"}


def test_the_router_feed_lists_the_adapters_loaded(server, store):
    # A router sends an adapter's requests only where the feed lists it (router/picker.py).
    follower = Follower(server.url, headers=auth(ADMIN))
    first = follower.wait(lambda e: isinstance(e, wire.Snapshot), "snapshot")
    assert "from-the-set" in first.adapters
    body = {"lora_name": "fed", "lora_path": stored(store, seed=4), "tenant": "team-a"}
    assert post(server, "load_lora_adapter", body).status_code == 200
    follower.wait(lambda e: isinstance(e, wire.Adapters) and "fed" in e.adapters, "load")
    assert post(server, "unload_lora_adapter", {"lora_name": "fed"}).status_code == 200
    gone = follower.wait(
        lambda e: isinstance(e, wire.Adapters) and "fed" not in e.adapters, "unload"
    )
    assert "from-the-set" in gone.adapters
    state = httpx.get(server.url + wire.STATE_PATH, headers=auth(ADMIN)).json()
    assert "fed" not in state["adapters"] and "from-the-set" in state["adapters"]


def test_lora_modules_are_served_from_the_start(tmp_path):
    good = write_dir(tmp_path / "good", adapter_files(seed=4, b_std=B_STD))
    engine = smollm2_engine(enable_lora=True, lora_modules=[f"started={good}"])
    with ServerThread(engine) as s:
        assert models(s, None)["started"]["parent"] == SMOLLM2
        resp = complete(s, "started", None)
        assert resp.status_code == 200
        assert (
            resp.json()["choices"][0]["text"]
            != complete(s, SMOLLM2, None).json()["choices"][0]["text"]
        )


def test_a_refused_lora_module_stops_the_start(tmp_path, caplog):
    bad = write_dir(tmp_path / "bad", adapter_files(rank=32))
    engine = smollm2_engine(enable_lora=True, lora_modules=[f"big={bad}"])
    server = ServerThread(engine)
    server._thread.start()
    server._thread.join(60)
    assert server.exit_code == 2
    assert "--lora-modules big: " in caplog.text and "--max-lora-rank" in caplog.text
