"""The NetworkPolicy admits the scrape, the operator, the service's own replicas and what
the platform names, and refuses the rest: rendered children, judged by an independent
evaluator of the documented semantics (tests/operator/network_policy_semantics.py)."""

from __future__ import annotations

import pytest

from infleet.operator.engines import ENGINES
from infleet.operator.policy import PlatformPolicy
from infleet.operator.render import RenderOptions, render_children
from tests.operator.network_policy_semantics import Pod, allowed
from tests.operator.samples import engine_isvc

NCCL = 29500  # a port the engines of a multi-node group use between themselves
PROMETHEUS = Pod("monitoring", {"app.kubernetes.io/name": "prometheus"})
OPERATOR = Pod("infleet-system", {"app.kubernetes.io/name": "infleet-operator"})
NEIGHBOUR = Pod("team-a", {"app": "client"})  # the tenant's own namespace
OTHER_TENANT = Pod("team-b", {"app": "client"})
GATEWAY = Pod("gateway", {"app": "envoy"}, namespace_labels={"role": "ingress"})


def rendered(kind="vllm", options=None):
    """(policies, one engine pod of the service) as the operator renders them."""
    children = render_children(engine_isvc(kind, "mixed"), options or RenderOptions())
    policies = [c for c in children if c["kind"] == "NetworkPolicy"]
    deployment = next(c for c in children if c["kind"] == "Deployment")
    template = deployment["spec"]["template"]
    container = template["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    return policies, Pod("team-a", template["metadata"]["labels"], ports)


@pytest.mark.parametrize("kind", ENGINES)
def test_scrape_operator_and_own_namespace_reach_the_engine_port(kind):
    policies, engine = rendered(kind)
    port = ENGINES[kind].port
    assert engine.ports["http"] == port
    for src in (PROMETHEUS, OPERATOR, NEIGHBOUR):
        assert allowed(policies, src, engine, port), src


@pytest.mark.parametrize("kind", ENGINES)
def test_another_namespace_is_refused(kind):
    policies, engine = rendered(kind)
    port = ENGINES[kind].port
    assert not allowed(policies, OTHER_TENANT, engine, port)
    # The operator's namespace admits its pods only; monitoring (by default) every pod.
    assert not allowed(policies, Pod("infleet-system", {"app": "x"}), engine, port)
    assert allowed(policies, Pod("monitoring", {"app": "grafana"}), engine, port)


def test_replicas_of_the_service_reach_each_other_on_any_port_others_only_on_http():
    policies, engine = rendered("vllm")
    replica = Pod("team-a", dict(engine.labels))
    assert allowed(policies, replica, engine, NCCL)
    assert not allowed(policies, NEIGHBOUR, engine, NCCL)
    other_service = Pod("team-a", {**engine.labels, "infleet.io/inferenceservice": "other"})
    assert not allowed(policies, other_service, engine, NCCL)
    assert not allowed(policies, PROMETHEUS, engine, NCCL)


def test_the_platform_names_a_gateway_and_closes_the_namespace():
    platform = PlatformPolicy.model_validate(
        {
            "network": {
                "sameNamespace": False,
                "ingressFrom": [
                    {
                        "namespaceSelector": {"matchLabels": {"role": "ingress"}},
                        "podSelector": {"matchLabels": {"app": "envoy"}},
                    }
                ],
                "prometheus": [
                    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "obs"}}}
                ],
            },
            "defaults": {"name": "everyone"},
        }
    )
    policies, engine = rendered("sglang", RenderOptions(platform=platform))
    assert allowed(policies, GATEWAY, engine, 30000)
    assert not allowed(policies, Pod("gateway", {"app": "debug"}), engine, 30000)
    assert not allowed(policies, NEIGHBOUR, engine, 30000)
    assert not allowed(policies, PROMETHEUS, engine, 30000)  # monitoring is not obs
    assert allowed(policies, Pod("obs", {"app": "prometheus"}), engine, 30000)
    assert allowed(policies, OPERATOR, engine, 30000)


def test_the_evaluator_sees_an_unisolated_pod_and_a_platform_that_turns_policies_off():
    platform = PlatformPolicy.model_validate(
        {"network": {"enabled": False}, "defaults": {"name": "all"}}
    )
    policies, engine = rendered("vllm", RenderOptions(platform=platform))
    assert policies == []
    assert allowed(policies, OTHER_TENANT, engine, 8000)  # nothing isolates it


@pytest.mark.parametrize("kind", ["vllm", "sglang"])
def test_only_the_operator_reaches_the_lora_sync_sidecar(kind):
    isvc = engine_isvc(kind, "mixed", engine={"lora": {"maxAdapters": 2}})
    children = render_children(isvc, RenderOptions())
    policies = [c for c in children if c["kind"] == "NetworkPolicy"]
    template = next(c for c in children if c["kind"] == "Deployment")["spec"]["template"]
    ports = {p["name"]: p["containerPort"]
             for c in template["spec"]["containers"] for p in c.get("ports") or []}  # fmt: skip
    pod = Pod("team-a", template["metadata"]["labels"], ports)
    assert allowed(policies, OPERATOR, pod, ports["lora-sync"])
    for src in (PROMETHEUS, NEIGHBOUR, OTHER_TENANT):
        assert not allowed(policies, src, pod, ports["lora-sync"]), src
