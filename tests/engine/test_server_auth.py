"""API keys and tenants on a real SmolLM2 server: 401s, the admin paths, the keys file
reloaded through a Secret-style symlink swap, and per-tenant prefix-cache isolation."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import openai
import pytest

from infleet.api.tenants import hash_key
from infleet.cli import main as infleet_main
from infleet.engine.args import EngineArgs, parse_args
from infleet.engine.server.auth import cache_salt
from tests.engine.serving import SMOLLM2, ServerThread, smollm2_engine

pytestmark = pytest.mark.slow
KEY_A, KEY_B, KEY_C, ADMIN = "sk-team-a-1", "sk-team-b-1", "sk-team-c-1", "sk-operator"
# Long enough for several full 16-token KV blocks: cached_tokens counts whole blocks.
PROMPT = "The quick brown fox jumps over the lazy dog. " * 12


def _write_secret(mount: Path, generation: str, keys: dict[str, list[str]]) -> None:
    """What the kubelet does for a Secret volume: a new ..data dir, then a symlink swap."""
    data = mount / generation
    data.mkdir()
    lines = [f"{t}:\n" + "".join(f"  - {hash_key(k)}\n" for k in ks) for t, ks in keys.items()]
    (data / "keys.yaml").write_text("".join(lines))
    tmp = mount / "..data_tmp"
    tmp.symlink_to(generation)
    os.replace(tmp, mount / "..data")
    if not (mount / "keys.yaml").is_symlink():
        (mount / "keys.yaml").symlink_to("..data/keys.yaml")


@pytest.fixture(scope="module")
def mount(tmp_path_factory) -> Path:
    m = tmp_path_factory.mktemp("secret")
    _write_secret(m, "..gen1", {"team-a": [KEY_A], "team-b": [KEY_B]})
    return m


@pytest.fixture(scope="module")
def server(mount):
    engine = smollm2_engine(
        max_model_len=1024, api_keys_file=str(mount / "keys.yaml"), admin_api_key=ADMIN
    )
    with ServerThread(engine) as s:
        yield s


def _get(server, path: str, key: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.get(server.url + path, headers=headers, timeout=60)


def _post(server, path: str, body: dict, key: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(server.url + path, json=body, headers=headers, timeout=120)


def test_health_and_metrics_stay_open_the_router_feed_needs_the_admin_key(server):
    assert _get(server, "/health").status_code == 200
    assert _get(server, "/metrics").status_code == 200
    # The feed holds every tenant's load and cached prefixes: the routers' key only.
    assert _get(server, "/router/state").status_code == 401
    assert _get(server, "/router/events", KEY_A).status_code == 403
    assert _get(server, "/router/state", ADMIN).status_code == 200


@pytest.mark.parametrize("key", [None, "sk-wrong"])
def test_v1_refuses_a_missing_or_wrong_key_in_openai_shape(server, key):
    r = _get(server, "/v1/models", key)
    assert r.status_code == 401
    err = r.json()["error"]
    assert err["code"] == "invalid_api_key" and err["type"] == "invalid_request_error"
    assert "sk-wrong" not in r.text  # the key is never echoed
    body = {"model": SMOLLM2, "prompt": "hi", "max_tokens": 1}
    assert _post(server, "/v1/completions", body, key).status_code == 401


def test_models_lists_the_model_by_name_not_path(server):
    r = _get(server, "/v1/models", KEY_A)
    assert r.status_code == 200
    (card,) = r.json()["data"]
    assert card["id"] == card["root"] == SMOLLM2


def test_openai_sdk_with_the_key(server):
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=KEY_B, max_retries=0)
    r = client.completions.create(model=SMOLLM2, prompt="Hello", max_tokens=2, temperature=0)
    assert r.usage.completion_tokens == 2
    bad = openai.OpenAI(base_url=server.url + "/v1", api_key="sk-nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_lora_endpoints_need_the_admin_key(server):
    body = {"lora_name": "x", "lora_path": "/nowhere"}
    assert _post(server, "/v1/load_lora_adapter", body, None).status_code == 401
    r = _post(server, "/v1/load_lora_adapter", body, KEY_A)
    assert r.status_code == 403 and r.json()["error"]["code"] == "permission_denied"
    # The admin key gets past authentication (the endpoint itself is issue 15's).
    assert _post(server, "/v1/unload_lora_adapter", body, ADMIN).status_code not in (401, 403)


def test_keys_file_is_reloaded_after_a_symlink_swap(server, mount):
    assert _get(server, "/v1/models", KEY_C).status_code == 401
    _write_secret(mount, "..gen2", {"team-a": [KEY_A], "team-c": [KEY_C]})
    deadline = time.monotonic() + 20
    while _get(server, "/v1/models", KEY_C).status_code != 200:
        assert time.monotonic() < deadline, "the new keys file never took effect"
        time.sleep(0.3)
    assert _get(server, "/v1/models", KEY_B).status_code == 401  # team-b's key was removed
    _write_secret(mount, "..gen3", {"team-a": [KEY_A], "team-b": [KEY_B]})
    deadline = time.monotonic() + 20
    while _get(server, "/v1/models", KEY_B).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.3)


def _cached(server, key: str, prompt: str = PROMPT, **extra) -> int:
    body = {"model": SMOLLM2, "prompt": prompt, "max_tokens": 1, "temperature": 0, **extra}
    r = _post(server, "/v1/completions", body, key)
    assert r.status_code == 200, r.text
    return r.json()["usage"]["prompt_tokens_details"]["cached_tokens"]


def test_tenants_do_not_see_each_others_cached_prompts(server):
    _cached(server, KEY_A)  # team-a warms the cache
    assert _cached(server, KEY_A) > 32  # the same tenant hits it
    assert _cached(server, KEY_B) == 0  # another tenant, same prompt: nothing cached
    assert _cached(server, KEY_B) > 32  # ... until it sent it itself


def test_a_client_salt_only_partitions_within_its_tenant(server):
    prompt = "Pack my box with five dozen liquor jugs. " * 12
    _cached(server, KEY_A, prompt)
    # team-b cannot reach team-a's blocks by sending team-a's (empty) client salt ...
    assert _cached(server, KEY_B, prompt, cache_salt="") == 0
    # ... and team-a's own salted requests are a partition of their own.
    assert _cached(server, KEY_A, prompt, cache_salt="mine") == 0
    assert _cached(server, KEY_A, prompt, cache_salt="mine") > 32


def test_salt_is_the_tenant_first():
    assert cache_salt("team-a", None) == cache_salt("team-a", "")
    assert cache_salt("team-a", "x") != cache_salt("team-b", "x")
    # No client salt can spell another tenant's salt: the separator is not in names.
    assert not cache_salt("team-b", "").startswith(cache_salt("team-a", ""))


def test_keys_stay_out_of_args_repr_and_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("INFLEET_API_KEY", "sk-from-env")
    args = parse_args([])
    assert args.api_key == "sk-from-env"
    assert "sk-from-env" not in repr(args)
    assert "sk-x" not in repr(EngineArgs(admin_api_key="sk-x"))


def test_metrics_can_require_a_key(tmp_path):
    from aiohttp.test_utils import make_mocked_request

    from infleet.engine.server.auth import ApiError, Keys, _caller

    keys = Keys.from_flags("sk-one", None, None, metrics_need_key=True)
    with pytest.raises(ApiError) as err:
        _caller(keys, make_mocked_request("GET", "/metrics"))
    assert err.value.status == 401
    ok = make_mocked_request("GET", "/metrics", headers={"Authorization": "Bearer sk-one"})
    assert _caller(keys, ok).name == "default"
    assert _caller(keys, make_mocked_request("GET", "/health")).name == "default"


def test_a_bad_keys_file_stops_serve_before_loading_the_model(tmp_path, capsys):
    keys = tmp_path / "keys.yaml"
    keys.write_text("team-a: [plaintext-key]\n")
    assert infleet_main(["serve", "--api-keys-file", str(keys)]) == 2
    err = capsys.readouterr().err
    assert "--api-keys-file" in err and "'team-a'" in err and "not a key hash" in err
    assert infleet_main(["serve", "--api-keys-file", str(tmp_path / "missing.yaml")]) == 2
