"""A keyed service without LoRA, as the operator renders it: its engines and routers get
the same admin key Secret, and a router follows a real engine's `/router/*` feed with it.
The pods' env is resolved as the kubelet would (secretKeyRef -> the Secret's value); the
engine parses its flags and environment as `infleet serve` does (SmolLM2, in process),
and the router's own follower reads its event stream."""

from __future__ import annotations

import asyncio

import aiohttp
import httpx
import pytest

from infleet.api import router_wire as wire
from infleet.operator.render import render_children
from infleet.router.follower import follow
from infleet.router.replicas import Endpoint, Replica, ReplicaSet
from tests.operator import samples

pytest.importorskip("torch")
pytestmark = pytest.mark.slow
SECRETS = {("chat-keys", "api-key"): "sk-tenant", ("chat-admin-key", "admin-key"): "sk-admin"}


def resolved_env(deployment: dict, container: str) -> dict[str, str]:
    """The container's env as the kubelet gives it: values, and Secret references read
    from SECRETS (field references, which need a pod, left out)."""
    pod = deployment["spec"]["template"]["spec"]
    env = next(c for c in pod["containers"] if c["name"] == container)["env"]
    out = {}
    for e in env:
        if "value" in e:
            out[e["name"]] = e["value"]
        elif "secretKeyRef" in e.get("valueFrom", {}):
            ref = e["valueFrom"]["secretKeyRef"]
            out[e["name"]] = SECRETS[(ref["name"], ref["key"])]
    return out


async def follows(url: str, key: str | None, timeout: float = 20) -> Replica | None:
    """The replica as a router follower holding `key` sees it once it has the snapshot,
    or None when the engine refuses it."""
    replicas = ReplicaSet()
    replicas.sync([Endpoint("engine-0", url)])
    async with aiohttp.ClientSession() as session:
        task = asyncio.create_task(follow(replicas, "engine-0", session, key))
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while loop.time() < deadline:
                replica = replicas.replicas["engine-0"]
                if replica.epoch and replica.published is not None:
                    return replica
                await asyncio.sleep(0.05)
            return None
        finally:
            task.cancel()


def test_a_router_with_the_rendered_admin_key_follows_a_keyed_engine(monkeypatch):
    from infleet.engine.args import parse_args
    from infleet.engine.llm_engine import LLMEngine
    from tests.engine.serving import SMOLLM2, ServerThread, smollm2

    isvc = samples.engine_isvc(
        "infleet",
        "mixed",
        engine={"apiKeys": {"secretName": "chat-keys"}},
        router={"enabled": True},
    )
    deployments = {
        c["metadata"]["name"]: c for c in render_children(isvc) if c["kind"] == "Deployment"
    }
    engine_env = resolved_env(deployments["chat-dedicated"], "engine")
    router_env = resolved_env(deployments["chat-router"], "router")
    admin = router_env["INFLEET_ADMIN_API_KEY"]
    assert engine_env["INFLEET_ADMIN_API_KEY"] == admin == "sk-admin"
    for name, value in engine_env.items():
        monkeypatch.setenv(name, value)
    args = parse_args(["--model", f"builtin:{SMOLLM2}", "--device", "cpu", "--dtype", "float32",
                       "--kv-cache-memory", "32MiB"])  # fmt: skip
    assert args.api_key == "sk-tenant" and args.admin_api_key == admin
    with ServerThread(LLMEngine(args, smollm2())) as server:
        # The feed is guarded: nothing, or a tenant's key, is refused.
        state = server.url + wire.STATE_PATH
        assert httpx.get(state).status_code == 401
        assert httpx.get(state, headers={"Authorization": "Bearer sk-tenant"}).status_code == 403
        assert asyncio.run(follows(server.url, "sk-tenant", timeout=2)) is None
        replica = asyncio.run(follows(server.url, admin))
        assert replica is not None, "the router's follower never got the engine's snapshot"
        epoch = httpx.get(state, headers={"Authorization": f"Bearer {admin}"}).json()["epoch"]
        assert replica.epoch == epoch
