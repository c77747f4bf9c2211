"""The router in front of an InferenceService (docs/router.md), end to end: the operator
renders it, it discovers the engines from their EndpointSlices, and clients reach the
bundled engine through it with the `openai` SDK. One routed service runs the scenarios in
file order (answers, prefix return against the router-off baseline, a spot interruption
failing no request); a second starts at zero and answers its first request.

The SDK talks to `status.url` from this process, so the URL must be reachable from here:
on the local plane every Service's ClusterIP is; on a real cluster this module skips
unless the router's Service has a load-balancer address."""

from __future__ import annotations

import os
import threading
import time
import uuid
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.cluster import INTERRUPT_ANNOTATION, Cluster

NAME, COLD = "routed", "cold"
MODEL = "smollm2-135m-instruct"
READY_TIMEOUT = 300
GPUS = int(os.environ.get("INFLEET_E2E_GPUS", "1"))  # 0 on kind/k3d


def manifest(ns: str, name: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": {"uri": "builtin:smollm2-135m-instruct"},
        "resources": {"gpus": GPUS, "cpu": "1", "memory": "2Gi"},
        **spec,
    }
    meta = {"name": name, "namespace": ns}
    return {"apiVersion": "infleet.io/v1alpha1", "kind": "InferenceService", "metadata": meta,
            "spec": body}  # fmt: skip


def _isvc(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    return cluster.get("inferenceservice", name, "-n", ns)


def _condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    conds = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conds if c["type"] == type_), {})


def _ready_replicas(cluster: Cluster, ns: str, name: str, replicas: int) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = _isvc(cluster, ns, name)
        status = obj.get("status") or {}
        ready = _condition(obj, "Ready").get("status") == "True"
        current = status.get("observedGeneration") == obj["metadata"]["generation"]
        return obj if ready and current and status.get("readyReplicas") == replicas else None

    return cluster.wait_for(check, READY_TIMEOUT, f"{name} Ready with {replicas} replicas")


def _routers_ready(cluster: Cluster, ns: str, name: str) -> None:
    # `rollout status` answers NotFound at once for a Deployment the operator has not
    # created yet: wait for it to exist first.
    def exists() -> bool:
        got = cluster.kubectl("get", "deployment", f"{name}-router", "-n", ns, check=False)
        return got.returncode == 0

    cluster.wait_for(exists, READY_TIMEOUT, f"deployment/{name}-router to exist")
    cluster.kubectl("rollout", "status", f"deployment/{name}-router", "-n", ns,
                    f"--timeout={READY_TIMEOUT}s", timeout=READY_TIMEOUT + 30)  # fmt: skip


def _client(url: str) -> openai.OpenAI:
    try:
        httpx.get(url.removesuffix("/v1") + "/health", timeout=5)
    except httpx.HTTPError as err:
        pytest.skip(f"status.url {url} is not reachable from the test process: {err}")
    return openai.OpenAI(base_url=url, api_key="none", max_retries=0, timeout=300)


def _engine_urls(cluster: Cluster, ns: str, name: str) -> list[str]:
    pods = cluster.get("pods", "-n", ns, "-l", f"infleet.io/inferenceservice={name}")["items"]
    return [
        f"http://{p['status']['podIP']}:8000"
        for p in pods
        if p["status"].get("podIP") and not p["metadata"].get("deletionTimestamp")
    ]


def _prefix_counters(urls: list[str]) -> tuple[float, float]:
    """(hits, queries) of the engines' prefix cache, in prompt tokens, summed."""
    hits = queries = 0.0
    for url in urls:
        for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
            for s in family.samples:
                if s.name == "infleet:prefix_cache_hits_total":
                    hits += s.value
                elif s.name == "infleet:prefix_cache_queries_total":
                    queries += s.value
    return hits, queries


@pytest.fixture(scope="module")
def routed(cluster: Cluster, namespace: str) -> dict[str, Any]:
    """Two replicas, one on a spot node, behind the router (on by default: maxReplicas 2)."""
    cluster.apply(
        manifest(
            namespace,
            NAME,
            scaling={"minReplicas": 2, "maxReplicas": 2},
            capacity={
                "dedicated": {"min": 1},
                "spot": {"enabled": True, "max": 1, "preset": "gke"},
            },
        )
    )
    obj = _ready_replicas(cluster, namespace, NAME, 2)
    _routers_ready(cluster, namespace, NAME)
    return obj


def test_requests_through_the_routers_url_are_answered(cluster, namespace, routed):
    url = _isvc(cluster, namespace, NAME)["status"]["url"]
    router = cluster.get("service", f"{NAME}-router", "-n", namespace)
    ingress = (router.get("status") or {}).get("loadBalancer", {}).get("ingress") or [{}]
    assert url in (
        f"http://{ingress[0].get('ip')}:8000/v1",
        f"http://{NAME}-router.{namespace}.svc.cluster.local:8000/v1",
    )
    client = _client(url)
    question = [{"role": "user", "content": "What is the capital of France?"}]
    answer = client.chat.completions.create(model=MODEL, messages=question, max_tokens=24,
                                            temperature=0)  # fmt: skip
    assert "Paris" in answer.choices[0].message.content
    stream = client.chat.completions.create(model=MODEL, messages=question, max_tokens=24,
                                            temperature=0, stream=True)  # fmt: skip
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == answer.choices[0].message.content
    # The router's own refusal, in the OpenAI shape, without a replica involved.
    with pytest.raises(openai.NotFoundError) as err:
        client.completions.create(model="no-such-model", prompt="hi", max_tokens=1)
    assert err.value.code == "model_not_found"
    models = [m.id for m in client.models.list()]
    assert models == [MODEL]


def _conversations(client_for, tag: str, turns: int, count: int) -> None:
    """`count` conversations of `turns` turns, each with its own long system prompt; each
    request on a new connection, so a plain Service spreads them like separate clients."""
    system = "You answer briefly. " + " ".join(
        f"Fact {i}: item {tag}-{i} is blue." for i in range(30)
    )
    chats = [
        [{"role": "system", "content": f"Conversation {tag}{c}. {system}"}] for c in range(count)
    ]
    for turn in range(turns):
        for chat in chats:
            chat.append({"role": "user", "content": f"Turn {turn}: name one colour."})
            with client_for() as client:
                out = client.chat.completions.create(model=MODEL, messages=chat, max_tokens=4,
                                                     temperature=0)  # fmt: skip
            chat.append({"role": "assistant", "content": out.choices[0].message.content or ""})


def _hit_rate(cluster, namespace, url: str, tag: str) -> float:
    engines = _engine_urls(cluster, namespace, NAME)
    hits0, queries0 = _prefix_counters(engines)
    # Three conversations: a connection-level round robin (kube-proxy's spreading, the
    # local plane's) then sends each turn of a conversation to the other replica.
    _conversations(lambda: openai.OpenAI(base_url=url, api_key="none", max_retries=0), tag, 3, 3)
    hits1, queries1 = _prefix_counters(engines)
    return (hits1 - hits0) / max(1.0, queries1 - queries0)


def test_conversations_return_to_the_replica_that_holds_their_prefix(cluster, namespace, routed):
    routed_url = _isvc(cluster, namespace, NAME)["status"]["url"]
    _client(routed_url)
    engines = cluster.get("service", NAME, "-n", namespace)  # the replicas' plain Service
    ip = ((engines.get("status") or {}).get("loadBalancer", {}).get("ingress") or [{}])[0].get("ip")
    if not ip:
        pytest.skip("the engines' Service has no address reachable from here")
    # The same workload (fresh prompts each time, so neither run warms the other's cache).
    baseline = _hit_rate(
        cluster, namespace, f"http://{ip}:8000/v1", f"plain-{uuid.uuid4().hex[:6]}"
    )
    routed_rate = _hit_rate(cluster, namespace, routed_url, f"routed-{uuid.uuid4().hex[:6]}")
    # Turns 2 and 3 re-send the history: routed, they find it all cached; spread, turn 2
    # lands on the replica that has not seen the conversation, turn 3 back on the first.
    assert routed_rate > 0.5, (routed_rate, baseline)
    assert routed_rate >= 1.5 * baseline, (routed_rate, baseline)


def test_a_spot_interruption_fails_no_request_through_the_router(cluster, namespace, routed):
    if not cluster.is_local_plane():
        pytest.skip("the interruption is injected by the local plane's node annotation")
    pods = cluster.get("pods", "-n", namespace, "-l", "infleet.io/pool=spot")["items"]
    victim = next(p for p in pods if p["spec"].get("nodeName"))
    url = _isvc(cluster, namespace, NAME)["status"]["url"]
    client = _client(url)
    results: list[Any] = []
    stop = threading.Event()

    def send(i: int) -> None:
        while not stop.is_set():
            question = [{"role": "user", "content": f"Count to {i + 3}."}]
            try:
                client.chat.completions.create(model=MODEL, messages=question, max_tokens=16)
                results.append(200)
            except openai.APIError as err:
                results.append(err)

    senders = [threading.Thread(target=send, args=(i,)) for i in range(3)]
    for t in senders:
        t.start()
    try:
        cluster.wait_for(lambda: len(results) >= 3, 120, "requests flowing")
        cluster.kubectl("annotate", "node", victim["spec"]["nodeName"], f"{INTERRUPT_ANNOTATION}=3")
        cluster.wait_for(
            lambda: not cluster.exists("pod", victim["metadata"]["name"], "-n", namespace),
            180,
            "the interrupted pod to go",
        )
        during = len(results)
        _ready_replicas(cluster, namespace, NAME, 2)  # the replacement serves too
        time.sleep(2)
    finally:
        stop.set()
        for t in senders:
            t.join(300)
    failed = [r for r in results if r != 200]
    assert failed == [] and during >= 6, (failed, len(results))


def test_a_service_at_zero_answers_its_first_request(cluster, namespace):
    scaling = {
        "minReplicas": 0,
        "maxReplicas": 2,
        "scaleToZero": {"enabled": True, "idleSeconds": 0},
    }
    cluster.apply(manifest(namespace, COLD, scaling=scaling))
    _routers_ready(cluster, namespace, COLD)

    def at_zero() -> bool:
        obj = _isvc(cluster, namespace, COLD)
        decision = (obj.get("status") or {}).get("lastScalingDecision") or {}
        pods = cluster.get("pods", "-n", namespace, "-l", f"infleet.io/inferenceservice={COLD}")
        return decision.get("reason") == "ScaledToZero" and not pods["items"]

    cluster.wait_for(at_zero, READY_TIMEOUT, f"{COLD} scaled to zero")
    client = _client(_isvc(cluster, namespace, COLD)["status"]["url"])
    question = [{"role": "user", "content": "What is the capital of France?"}]
    answer = client.chat.completions.create(model=MODEL, messages=question, max_tokens=24,
                                            temperature=0)  # fmt: skip
    assert "Paris" in answer.choices[0].message.content
    events = cluster.get("events", "-n", namespace)["items"]
    reasons = {e["reason"] for e in events if e["involvedObject"].get("name") == COLD}
    assert "ActivatedFromZero" in reasons, reasons
