"""The adapter names the router accepts come from the service's adapter set ConfigMap,
listed and watched live against the local control plane (a real API server process):
created, updated and deleted with kubectl, each changes which names the router answers
404 for, per tenant, without touching a replica and without restarting the router."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
import yaml

from infleet.api.lora_set import Entry
from infleet.api.tenants import Tenant, hash_key
from infleet.operator.render import render_children
from infleet.router import cli
from infleet.router.adapter_set import AdapterSet, watch_adapter_set
from infleet.router.config import RouterConfig
from infleet.router.discovery import poll_static
from infleet.router.proxy import Router
from tests.charts.conftest import attributes
from tests.operator import samples
from tests.router.fake_engine import FakeEngine
from tests.router.harness import Loop, RunningRouter, start_engines, wait_until
from tests.router.test_kube_discovery import access_of, plane  # noqa: F401  (the fixture)

SET = "chat-lora"
KEYS = {"team-a": "key-a", "team-b": "key-b"}


def entry(name: str, tenant: str) -> Entry:
    return Entry(name, f"http://store/{tenant}/{name}.tar.gz", "0" * 64, tenant)


def adapter_set(*adapters: tuple[str, str]) -> dict:
    data = {f"{tenant}.{name}": entry(name, tenant).to_json() for name, tenant in adapters}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": SET}, "data": data}


def allowed(role: dict, request) -> bool:
    """Whether the Role lets this request through, resourceNames included (a list or watch
    names its object with a metadata.name field selector, as RBAC requires)."""
    ((group, resource, verb),) = attributes(request)
    selector = request.query.get("fieldSelector", "")
    name = selector.removeprefix("metadata.name=") if selector.startswith("metadata.") else None
    return any(
        group in rule["apiGroups"]
        and resource in rule["resources"]
        and verb in rule["verbs"]
        and ("resourceNames" not in rule or name in rule["resourceNames"])
        for rule in role["rules"]
    )


def test_a_name_in_the_set_is_its_tenants_alone():
    found = AdapterSet(static=["cli-only", "sql"])
    found.update([adapter_set(("sql", "team-a"))])
    a, b, admin = Tenant("team-a"), Tenant("team-b"), Tenant("ops", admin=True)
    published = frozenset({"loaded", "sql"})
    assert found.accepts("sql", a, published) and found.accepts("sql", admin, published)
    assert not found.accepts("sql", b, published)  # neither the flag nor the feed opens it
    assert found.accepts("cli-only", b, published) and found.accepts("loaded", b, published)
    assert not found.accepts("other", admin, published)
    assert found.visible(b, published) == ["cli-only", "loaded"]
    found.update([])  # the ConfigMap went: the flag's name is open to all again
    assert found.accepts("sql", b, published)


def test_a_router_is_not_ready_until_it_has_listed_its_set(loop: Loop):
    listed = asyncio.Event()

    async def discover(router: Router) -> None:
        await listed.wait()  # the API server is slow to answer the first list
        router.adapters.update([adapter_set(("sql", "team-a"))])

    router = RunningRouter(loop, RouterConfig(model="tiny", adapter_set=SET), discover)
    try:
        health = httpx.get(router.url + "/health")
        assert (health.status_code, health.json()["status"]) == (503, "starting")
        loop.run(_set(listed))
        wait_until(loop, lambda: router.router.adapters.synced)
        assert httpx.get(router.url + "/health").status_code == 200
    finally:
        router.stop()


async def _set(event: asyncio.Event) -> None:
    event.set()


def test_the_adapter_set_needs_kubernetes():
    with pytest.raises(SystemExit):
        cli.main(["--model=tiny", "--replica=http://127.0.0.1:1", f"--adapter-set={SET}"])


def test_the_router_follows_its_adapter_set(plane, loop: Loop, tmp_path: Path):  # noqa: F811
    engine = FakeEngine("a", adapters=("sql", "bot"))
    (url,) = start_engines(loop, [engine])
    keys = tmp_path / "keys.yaml"
    table = {t: [hash_key(k)] for t, k in KEYS.items()}
    keys.write_text(yaml.safe_dump(table | {"ops": {"keys": [hash_key("key-ops")], "admin": True}}))
    access = access_of(plane, tmp_path)
    log = plane.call(plane.plane.server.faults.record)  # each API request, as RBAC sees it

    async def discover(router: Router) -> None:
        assert router.session is not None
        await asyncio.gather(
            poll_static(router.replicas, [url], router.session, 0.1),
            watch_adapter_set(router.adapters, access, "default", SET),
        )

    config = RouterConfig(model="tiny", keys_file=keys, adapter_set=SET)
    router = RunningRouter(loop, config, discover)
    owners = lambda: router.router.adapters.owners  # noqa: E731

    def status(model: str, key: str) -> int:
        headers = {"Authorization": f"Bearer {key}"}
        body = {"model": model, "prompt": "hello"}
        return httpx.post(router.url + "/v1/completions", json=body, headers=headers).status_code

    def listed(key: str) -> set[str]:
        got = httpx.get(router.url + "/v1/models", headers={"Authorization": f"Bearer {key}"})
        return {card["id"] for card in got.json()["data"]} - {"tiny"}

    try:
        wait_until(loop, lambda: router.router.replicas.ready_count(0) == 1)
        # No set yet (a service without adapters): the engine has them, the router says 404;
        # another service's set is not this one's.
        other = adapter_set(("sql", "team-a"))
        other["metadata"]["name"] = "other-lora"
        plane.apply(other)
        assert status("sql", "key-a") == 404 and engine.seen == []

        plane.apply(adapter_set(("sql", "team-a")))
        wait_until(loop, lambda: owners() == {"sql": "team-a"})
        assert status("sql", "key-a") == 200
        assert status("sql", "key-ops") == 200  # the admin sees every tenant's
        seen = len(engine.seen)
        assert status("sql", "key-b") == 404  # another tenant's: as the engine would answer
        assert status("bot", "key-b") == 404
        assert len(engine.seen) == seen  # ...without touching a replica
        assert listed("key-a") == {"sql"} and listed("key-b") == set()

        plane.apply(adapter_set(("sql", "team-a"), ("bot", "team-b")))
        wait_until(loop, lambda: owners() == {"sql": "team-a", "bot": "team-b"})
        assert status("bot", "key-b") == 200 and status("sql", "key-b") == 404
        assert listed("key-b") == {"bot"}

        plane.kubectl("delete", "configmap", SET)
        wait_until(loop, lambda: owners() == {})
        assert status("sql", "key-a") == 404 and status("bot", "key-b") == 404

        # Every request the router made is one the Role the operator renders for it allows.
        (role,) = [
            c
            for c in render_children(samples.isvc(router={"enabled": True}))
            if c["kind"] == "Role"
        ]
        assert role["rules"][-1]["resourceNames"] == [SET]  # the service `chat`'s set
        made = [r for r in log if "aiohttp" in r.user_agent]
        assert {v for r in made for _, _, v in attributes(r)} == {"list", "watch"}
        assert [r.path for r in made if not allowed(role, r)] == []
    finally:
        router.stop()
        loop.run(engine.stop())
