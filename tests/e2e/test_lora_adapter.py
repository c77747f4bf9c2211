"""A tenant's LoRAAdapter through its life on the local fleet, driven with kubectl.

A platform namespace serves the base model and admits two tenant namespaces. Tenant A
applies an adapter served over HTTP (with a bearer token from its Secret) from a server
in this process: it becomes Ready with loadedReplicas == replicas; a new replica
(scale-out) and a replacement pod list it before they are Ready; while they start, a
request naming it never gets 404. Refusals (another tenant's adapter with the same served
name, a namespace not admitted, bad inputs) each leave Ready=False with their reason and
disturb nothing. Deleting the adapter gets 404 for it on every replica. The service admits
other namespaces, so it authenticates: each admitted tenant reads its API key from its own
namespace, and one tenant neither lists nor uses another's adapter; a namespace labelled to
match the service's namespaceSelector gets a key and its hash in the service's keys file,
and loses the hash when the label goes.

A request naming the loaded adapter gets the adapter's own tokens on every replica (the
same greedy completion an engine run in this process gives with the same files, unlike
the base model's); one naming an unknown model gets 404.

Local plane only: the adapter server is on this machine's loopback and the replicas are
asked directly at their pod IPs.
"""

from __future__ import annotations

import base64
import http.server
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from infleet.api.tenants import hash_key
from infleet.localplane.container import claim_dir
from infleet.lora.artifact import pack
from tests.e2e.cluster import Cluster
from tests.lora.reference import adapter_text, completion_body
from tests.lora.written_adapters import OTHER, adapter_files, targz, write_dir

SERVICE = "base"
SELECTOR = f"infleet.io/inferenceservice={SERVICE}"
TOKEN = "tenant-a-token"
TENANT_LABEL = "infleet.io/e2e-lora-tenant"
B_STD = 0.02  # random, non-zero B: the adapter changes SmolLM2's tokens
BENCH: dict[str, float] = {}


class ArtifactServer:
    """The tenants' artifact host: directories and archives, some behind a bearer token."""

    def __init__(self, root: Path) -> None:
        self.root = root
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = server.root / self.path.lstrip("/")
                if self.path.startswith("/private/") and (
                    self.headers.get("Authorization") != f"Bearer {TOKEN}"
                ):
                    self.send_error(401)
                    return
                if not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def add_dir(self, rel: str, files: dict[str, bytes]) -> str:
        folder = self.root / rel
        folder.mkdir(parents=True)
        for name, body in files.items():
            (folder / name).write_bytes(body)
        return f"{self.url}/{rel}"

    def add_file(self, rel: str, body: bytes) -> str:
        (self.root / rel).parent.mkdir(parents=True, exist_ok=True)
        (self.root / rel).write_bytes(body)
        return f"{self.url}/{rel}"


@pytest.fixture(scope="module")
def fleet(cluster: Cluster, namespace: str, tmp_path_factory: pytest.TempPathFactory):
    if not cluster.is_local_plane():
        pytest.skip("the adapter server and the replicas' pod IPs are on this machine only")
    tenants = {t: f"{namespace}-{t}" for t in ("a", "b", "c")}
    for ns in tenants.values():
        cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "artifact-token", "namespace": tenants["a"]},
            "stringData": {"BEARER_TOKEN": TOKEN},
        },
        {
            "apiVersion": "infleet.io/v1alpha1",
            "kind": "InferenceService",
            "metadata": {"name": SERVICE, "namespace": namespace},
            "spec": {
                "model": {"uri": "builtin:smollm2-135m-instruct"},
                "resources": {"gpus": 1, "cpu": "1", "memory": "2Gi"},
                "scaling": {"minReplicas": 1, "maxReplicas": 3},
                "capacity": {"dedicated": {"min": 1}, "spot": {"enabled": False}},
                "engine": {
                    "lora": {
                        "maxAdapters": 4,
                        "maxRank": 16,
                        "allowedNamespaces": [tenants["a"], tenants["b"]],
                        # Tenant c is admitted by label at the end (its API key comes and goes).
                        "namespaceSelector": {"matchLabels": {TENANT_LABEL: namespace}},
                    }
                },
            },
        },
    )
    server = ArtifactServer(tmp_path_factory.mktemp("artifacts"))
    # The service admits other namespaces, so it authenticates: each admitted tenant finds
    # its API key in its own namespace.
    keys = {t: api_key(cluster, ns) for t, ns in tenants.items() if t != "c"}
    assert not cluster.exists("secret", f"{SERVICE}-api-key", "-n", tenants["c"])
    yield cluster, namespace, tenants, server, keys
    server.httpd.shutdown()
    for ns in tenants.values():
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def api_key(cluster: Cluster, ns: str) -> str:
    def read() -> str | None:
        if not cluster.exists("secret", f"{SERVICE}-api-key", "-n", ns):
            return None
        data = cluster.get("secret", f"{SERVICE}-api-key", "-n", ns)["data"]
        return base64.b64decode(data["api-key"]).decode()

    return cluster.wait_for(read, 120, f"the API key of {ns}")


def adapter(name: str, ns: str, uri: str, target_ns: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "infleet.io/v1alpha1",
        "kind": "LoRAAdapter",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"uri": uri, "inferenceServiceRef": {"name": SERVICE, "namespace": target_ns},
                 **spec},
    }  # fmt: skip


def ready_pods(cluster: Cluster, ns: str) -> list[dict[str, Any]]:
    return [
        p
        for p in cluster.get("pods", "-n", ns, "-l", SELECTOR)["items"]
        if not p["metadata"].get("deletionTimestamp")
        and any(c["type"] == "Ready" and c["status"] == "True"
                for c in p["status"].get("conditions") or [])
    ]  # fmt: skip


def base_url(pod: dict[str, Any]) -> str:
    return f"http://{pod['status']['podIP']}:8000"


def listed(pod: dict[str, Any], key: str) -> set[str]:
    auth = {"Authorization": f"Bearer {key}"}
    cards = httpx.get(base_url(pod) + "/v1/models", headers=auth, timeout=10).json()["data"]
    return {c["id"] for c in cards if c.get("parent")}


def condition(cluster: Cluster, ns: str, name: str, type_: str = "Ready") -> dict[str, Any]:
    status = cluster.get("loraadapter", name, "-n", ns).get("status") or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), {})


def wait_reason(cluster: Cluster, ns: str, name: str, reason: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        cond = condition(cluster, ns, name)
        return cond if cond.get("reason") == reason else None

    return cluster.wait_for(check, 120, f"{ns}/{name} Ready=False {reason}")


def wait_loaded(cluster: Cluster, ns: str, name: str, replicas: int) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = cluster.get("loraadapter", name, "-n", ns)
        st = obj.get("status") or {}
        ok = condition(cluster, ns, name).get("status") == "True"
        if ok and st.get("replicas") == replicas == st.get("loadedReplicas"):
            return obj
        return None

    return cluster.wait_for(check, 300, f"{ns}/{name} loaded on {replicas} replicas")


def chat_status(url: str, model: str, key: str) -> int:
    """The status a chat completion naming `model` gets from the engine at `url`."""
    client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=30)
    try:
        client.chat.completions.create(
            model=model, max_tokens=2, messages=[{"role": "user", "content": "Hi"}]
        )
    except openai.APIStatusError as err:
        return err.status_code
    return 200


def completion_text(url: str, model: str, key: str) -> str:
    client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=60)
    body = completion_body(model)
    return client.completions.create(**body).choices[0].text


class Prober:
    """Asks the service for the adapter the whole time a block runs; counts the answers."""

    def __init__(self, url: str, model: str, key: str) -> None:
        self.url, self.model, self.key, self.answers = url, model, key, Counter[int]()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.answers[chat_status(self.url, self.model, self.key)] += 1
            except openai.APIConnectionError:
                self.answers[0] += 1
            time.sleep(0.2)

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(60)


def test_adapter_ready_on_every_replica(fleet, tmp_path) -> None:
    cluster, ns, tenants, server, keys = fleet
    files = adapter_files(rank=8, seed=1, b_std=B_STD)
    uri = server.add_dir("private/a1", files)
    secret = {"credentialsSecretRef": {"name": "artifact-token"}, "servedName": "tenant-a-chat"}
    cluster.wait_for(lambda: len(ready_pods(cluster, ns)) == 1, 300, "the base model's replica")
    applied = time.monotonic()
    cluster.apply(adapter("a1", tenants["a"], uri, ns, **secret))
    obj = wait_loaded(cluster, tenants["a"], "a1", 1)
    BENCH["applied_to_ready_s"] = time.monotonic() - applied
    st = obj["status"]
    assert st["checksum"].startswith("sha256:") and st["size"] > 0 and st["rank"] == 8
    assert st["service"] == f"{ns}/{SERVICE}" and st["servedName"] == "tenant-a-chat"
    expected = adapter_text(files, tmp_path)
    assert expected != adapter_text(None, tmp_path)
    for pod in ready_pods(cluster, ns):
        assert listed(pod, keys["a"]) == {"tenant-a-chat"}
        # The adapter's own tokens; an unknown model is 404.
        assert completion_text(base_url(pod), "tenant-a-chat", keys["a"]) == expected
        assert chat_status(base_url(pod), "no-such-adapter", keys["a"]) == 404
        # Another tenant neither lists nor uses it; no key gets nothing.
        assert listed(pod, keys["b"]) == set()
        assert chat_status(base_url(pod), "tenant-a-chat", keys["b"]) == 404
        assert chat_status(base_url(pod), "tenant-a-chat", "no-key") == 401
    printed = cluster.kubectl("get", "lora", "-n", tenants["a"]).stdout
    assert "tenant-a-chat" in printed and "Loaded" in printed
    assert (
        TOKEN not in str(obj)
        and TOKEN not in cluster.kubectl("get", "events", "-A", "-o", "yaml").stdout
    )


def _new_pod_serves_before_ready(cluster: Cluster, ns: str, old: set[str], key: str) -> None:
    def first_ready() -> dict[str, Any] | None:
        fresh = [p for p in ready_pods(cluster, ns) if p["metadata"]["name"] not in old]
        return fresh[0] if fresh else None

    pod = cluster.wait_for(first_ready, 300, "a new ready replica")
    # The engine reads the set before it listens: its first answer already lists it.
    assert "tenant-a-chat" in listed(pod, key)


def test_scale_out_and_pod_replacement_serve_it_before_ready(fleet) -> None:
    cluster, ns, tenants, _, keys = fleet
    url = cluster.get("inferenceservice", SERVICE, "-n", ns)["status"]["url"].removesuffix("/v1")
    with Prober(url, "tenant-a-chat", keys["a"]) as probe:
        old = {p["metadata"]["name"] for p in ready_pods(cluster, ns)}
        cluster.kubectl("scale", f"inferenceservice/{SERVICE}", "-n", ns, "--replicas=2")
        _new_pod_serves_before_ready(cluster, ns, old, keys["a"])
        wait_loaded(cluster, tenants["a"], "a1", 2)
        victim = sorted(old)[0]
        old = {p["metadata"]["name"] for p in ready_pods(cluster, ns)}
        cluster.kubectl("delete", "pod", victim, "-n", ns, "--wait=false")
        _new_pod_serves_before_ready(cluster, ns, old, keys["a"])
        wait_loaded(cluster, tenants["a"], "a1", 2)
    assert probe.answers[200] > 0, probe.answers
    assert probe.answers[404] == 0, probe.answers
    BENCH["probe_answers_during_scale_out_and_replacement"] = dict(probe.answers)


def test_second_tenant_adapter_reaches_both_replicas(fleet) -> None:
    cluster, ns, tenants, server, keys = fleet
    uri = server.add_dir("b/b1", adapter_files(rank=16, seed=3))
    applied = time.monotonic()
    cluster.apply(adapter("b1", tenants["b"], uri, ns))
    wait_loaded(cluster, tenants["b"], "b1", 2)
    BENCH["applied_to_ready_2_replicas_s"] = time.monotonic() - applied
    for pod in ready_pods(cluster, ns):
        assert listed(pod, keys["b"]) == {"b1"} and listed(pod, keys["a"]) == {"tenant-a-chat"}
    cluster.kubectl("delete", "loraadapter", "b1", "-n", tenants["b"])
    cluster.wait_for(
        lambda: all(not listed(p, keys["b"]) for p in ready_pods(cluster, ns)), 60, "b1 unloaded"
    )


def test_refusals_with_reasons_disturb_nothing(fleet) -> None:
    cluster, ns, tenants, server, keys = fleet
    good = adapter_files(rank=4, seed=2)
    cases = [
        ("dup", tenants["b"], server.add_dir("b/dup", good), {"servedName": "tenant-a-chat"},
         "NameConflict"),
        ("other-ns", tenants["c"], server.add_dir("c/x", good), {}, "NamespaceNotAllowed"),
        ("rank", tenants["b"], server.add_dir("b/rank", adapter_files(rank=32)), {},
         "RankTooLarge"),
        ("declared-rank", tenants["b"], server.add_dir("b/decl", good), {"rank": 64},
         "RankTooLarge"),
        ("base", tenants["b"], server.add_dir("b/base", adapter_files(base=OTHER)), {},
         "BaseModelMismatch"),
        ("corrupt", tenants["b"], server.add_file("b/c.tar.gz", targz(good)[:200]), {},
         "InvalidAdapter"),
        ("gone", tenants["b"], f"{server.url}/b/nothing-here/", {}, "ArtifactUnreachable"),
        ("no-secret", tenants["b"], server.add_dir("b/s", good),
         {"credentialsSecretRef": {"name": "missing"}}, "ArtifactUnreachable"),
    ]  # fmt: skip
    cluster.apply(*(adapter(name, tns, uri, ns, **extra) for name, tns, uri, extra, _ in cases))
    for name, tns, _, _, reason in cases:
        cond = wait_reason(cluster, tns, name, reason)
        assert cond["status"] == "False" and cond["message"], (name, cond)
        assert condition(cluster, tns, name, "Degraded")["reason"] == reason
    # Nothing else moved: the set holds tenant A's adapter alone, every replica serves it.
    data = cluster.get("configmap", f"{SERVICE}-lora", "-n", ns).get("data") or {}
    assert list(data) == [f"{tenants['a']}.a1"]
    wait_loaded(cluster, tenants["a"], "a1", 2)
    for pod in ready_pods(cluster, ns):
        assert listed(pod, keys["a"]) == {"tenant-a-chat"} and listed(pod, keys["b"]) == set()
    for name, tns, *_ in cases:
        cluster.kubectl("delete", "loraadapter", name, "-n", tns, "--wait=false")


def test_an_adapter_on_a_claim_is_uploaded_and_served(fleet, tmp_path) -> None:
    """pvc://: an upload Job in the tenant's namespace brings it to the store; then it is
    served like any other. A missing claim and a path not on it are refused with reasons."""
    cluster, ns, tenants, _, keys = fleet
    tns = tenants["b"]
    files = adapter_files(rank=4, seed=7, b_std=B_STD)
    # The local fleet keeps a claim's volume in its state dir (docs/localplane.md).
    claims = cluster.kubeconfig.parent / "state" / "claims"
    write_dir(claim_dir(claims, tns, "adapters") / "bots" / "support", files)
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "adapters", "namespace": tns},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    cases = [("claimed", "pvc://adapters/bots/support"), ("no-claim", "pvc://nowhere/x"),
             ("not-on-claim", "pvc://adapters/bots/other")]  # fmt: skip
    cluster.apply(claim, *(adapter(name, tns, uri, ns) for name, uri in cases))
    replicas = len(cluster.wait_for(lambda: ready_pods(cluster, ns), 300, "a ready replica"))
    obj = wait_loaded(cluster, tns, "claimed", replicas)
    assert obj["status"]["checksum"] == pack(files).checksum
    assert obj["status"]["size"] == pack(files).size and obj["status"]["rank"] == 4
    expected = adapter_text(files, tmp_path)
    for pod in ready_pods(cluster, ns):
        assert completion_text(base_url(pod), "claimed", keys["b"]) == expected
    assert (
        f"{tns}/nowhere not found"
        in wait_reason(cluster, tns, "no-claim", "ArtifactUnreachable")["message"]
    )
    failed = wait_reason(cluster, tns, "not-on-claim", "ArtifactUnreachable")["message"]
    assert "BackoffLimitExceeded" in failed and "does not exist on the claim" in failed
    # The token was spent and is gone: no upload Job or Secret is left in the namespace.
    cluster.wait_for(
        lambda: (
            not cluster.get("jobs,secrets", "-n", tns, "-l", "infleet.io/lora-upload=claimed")[
                "items"
            ]
        ),
        60,
        "the upload Jobs and their Secrets deleted",
    )
    for name, _ in cases:
        cluster.kubectl("delete", "loraadapter", name, "-n", tns)
    cluster.wait_for(
        lambda: (
            f"{tns}.claimed"
            not in (cluster.get("configmap", f"{SERVICE}-lora", "-n", ns).get("data") or {})
        ),
        60,
        "the claimed adapter out of the set",
    )


def test_delete_gets_404_on_every_replica(fleet) -> None:
    cluster, ns, tenants, _, keys = fleet
    cluster.kubectl("delete", "loraadapter", "a1", "-n", tenants["a"])

    def gone() -> bool:
        pods = ready_pods(cluster, ns)
        return bool(pods) and all(
            "tenant-a-chat" not in listed(p, keys["a"])
            and chat_status(base_url(p), "tenant-a-chat", keys["a"]) == 404
            for p in pods
        )

    cluster.wait_for(gone, 120, "the adapter gone from every replica")
    data = cluster.get("configmap", f"{SERVICE}-lora", "-n", ns).get("data") or {}
    assert data == {}
    # The routers watch the set: the adapter is a 404 through status.url too, and none of
    # the adapters added and deleted in this module changed the routers' pod template.
    url = cluster.get("inferenceservice", SERVICE, "-n", ns)["status"]["url"]
    cluster.wait_for(
        lambda: chat_status(url.removesuffix("/v1"), "tenant-a-chat", keys["a"]) == 404,
        30,
        "the router's 404 for the deleted adapter",
    )
    routers = cluster.get("deployment", f"{SERVICE}-router", "-n", ns)
    assert routers["metadata"]["generation"] == 1, "the routers rolled"
    print(f"\nBENCH lora applied -> loaded on every replica: {BENCH}")


def test_a_namespace_admitted_by_label_gets_a_key_and_loses_it(fleet) -> None:
    """The operator's part: the key, and its hash in the service's keys file, come with the
    label and the hash goes with it. (Replicas read the keys file as mounted; the local plane
    writes a ConfigMap volume once, at pod start, where a kubelet refreshes it.)"""
    cluster, ns, tenants, _, _ = fleet
    cluster.kubectl("label", "namespace", tenants["c"], f"{TENANT_LABEL}={ns}")
    key = api_key(cluster, tenants["c"])

    def keys_file() -> dict[str, list[str]]:
        data = cluster.get("configmap", f"{SERVICE}-api-keys", "-n", ns)["data"]
        return yaml.safe_load(data["keys.yaml"]) or {}

    hashed = hash_key(key)
    cluster.wait_for(lambda: keys_file().get(tenants["c"]) == [hashed], 60, "tenant c's hash")
    cluster.kubectl("label", "namespace", tenants["c"], f"{TENANT_LABEL}-")
    cluster.wait_for(lambda: tenants["c"] not in keys_file(), 60, "tenant c's hash revoked")
    assert set(keys_file()) == {ns, tenants["a"], tenants["b"]}
