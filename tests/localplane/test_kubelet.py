"""The process kubelet: probes -> Ready, env and volumes, logs, services, graceful
termination (preStop, SIGTERM drain, SIGKILL after the grace period), restarts."""

import ipaddress
import threading
import time

import httpx
import pytest

from tests.localplane.harness import RunningPlane
from tests.localplane.manifests import namespace
from tests.localplane.pods import deployment, pod, server_container, service

NS = "kubelet"


def _within(ip: str, network: str) -> bool:
    return ipaddress.ip_address(ip) in ipaddress.ip_network(network)


def _ready(plane: RunningPlane, name: str) -> dict:
    return plane.wait_for(
        lambda: (
            (p := plane.get("pod", name, "-n", NS))
            and any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in p["status"].get("conditions", [])
            )
            and p
        ),
        what=f"pod {name} Ready",
    )


@pytest.fixture(scope="module", autouse=True)
def ns(plane: RunningPlane) -> None:
    plane.apply(namespace(NS))


def test_probe_ready_env_config_volume_and_logs(plane: RunningPlane) -> None:
    plane.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "demo", "namespace": NS},
                "data": {"cfg.txt": "from-a-configmap"},
            },
            pod(
                "web",
                NS,
                server_container(
                    "--config=/etc/demo/cfg.txt",
                    env=[
                        *server_container()["env"],
                        {"name": "GREETING", "value": "hi $(POD_NAME) $$(LIT)"},
                    ],
                    volumeMounts=[{"name": "cfg", "mountPath": "/etc/demo"}],
                ),
                volumes=[{"name": "cfg", "configMap": {"name": "demo"}}],
            ),
        ]
    )
    p = _ready(plane, "web")
    assert p["status"]["phase"] == "Running" and _within(
        p["status"]["podIP"], plane.plane.config.pod_network
    )
    assert p["spec"]["nodeName"].startswith("dedicated-")  # no spot toleration
    status = p["status"]["containerStatuses"][0]
    assert status["ready"] and status["restartCount"] == 0 and "running" in status["state"]
    assert httpx.get(f"http://{p['status']['podIP']}:8080/whoami").text == "web"
    logs = plane.kubectl("logs", "web", "-n", NS).stdout
    assert "config: from-a-configmap" in logs and "greeting: hi web $(LIT)" in logs


def test_service_proxy_spreads_over_ready_endpoints(plane: RunningPlane) -> None:
    plane.apply([deployment("spread", NS, 2, server_container()), service("spread", NS)])
    plane.kubectl("rollout", "status", "deployment/spread", "-n", NS, "--timeout=60s")
    svc = plane.get("service", "spread", "-n", NS)
    ip = svc["spec"]["clusterIP"]
    assert _within(ip, plane.plane.config.service_network)
    assert svc["status"]["loadBalancer"]["ingress"][0]["ip"] == ip
    plane.wait_for(
        lambda: (
            len(
                [
                    e
                    for s in plane.get(
                        "endpointslices", "-n", NS, "-l", "kubernetes.io/service-name=spread"
                    )["items"]
                    for e in s["endpoints"]
                    if e["conditions"]["ready"]
                ]
            )
            == 2
        )
    )
    names = {httpx.get(f"http://{ip}/whoami", timeout=5).text for _ in range(6)}
    assert len(names) == 2 and all(n.startswith("spread-") for n in names)


def test_delete_runs_prestop_drains_inflight_then_exits(plane: RunningPlane) -> None:
    mark = plane.dir / "prestop.mark"
    plane.apply(
        pod(
            "drain",
            NS,
            server_container(
                lifecycle={
                    "preStop": {"exec": {"command": ["sh", "-c", f"echo prestop >> {mark}"]}}
                }
            ),
            terminationGracePeriodSeconds=20,
        )
    )
    ip = _ready(plane, "drain")["status"]["podIP"]
    result: dict = {}
    slow = threading.Thread(
        target=lambda: result.update(r=httpx.get(f"http://{ip}:8080/slow?s=1.5", timeout=10))
    )
    slow.start()
    time.sleep(0.3)
    start = time.monotonic()
    plane.kubectl("delete", "pod", "drain", "-n", NS, "--wait=false")
    terminating = plane.get("pod", "drain", "-n", NS)
    assert terminating["metadata"]["deletionGracePeriodSeconds"] == 20
    plane.kubectl("wait", "--for=delete", "pod/drain", "-n", NS, "--timeout=20s")
    slow.join()
    assert result["r"].status_code == 200 and result["r"].text == "done"
    assert 0.8 < time.monotonic() - start < 10  # waited for the request, not the grace
    assert mark.read_text() == "prestop\n"


def test_grace_period_ends_with_sigkill(plane: RunningPlane) -> None:
    plane.apply(
        pod("stubborn", NS, server_container("--ignore-term"), terminationGracePeriodSeconds=1)
    )
    _ready(plane, "stubborn")
    start = time.monotonic()
    plane.kubectl("delete", "pod", "stubborn", "-n", NS, "--timeout=20s")
    assert 0.9 < time.monotonic() - start < 6


def test_restart_policies_and_crash_loop_backoff(plane: RunningPlane) -> None:
    plane.apply(
        [
            pod("crash", NS, server_container("--exit-after=0.2", probe=False)),
            pod(
                "once", NS, server_container("--exit-after=0.2", probe=False), restartPolicy="Never"
            ),
            pod(
                "job",
                NS,
                {"name": "c", "image": "x", "command": ["true"]},
                restartPolicy="OnFailure",
            ),
        ]
    )

    def crashed() -> dict | None:
        s = plane.get("pod", "crash", "-n", NS)["status"]["containerStatuses"][0]
        return s if s["restartCount"] >= 2 else None

    status = plane.wait_for(crashed, timeout=30, what="two restarts")
    assert status["lastState"]["terminated"]["exitCode"] == 3
    assert status["lastState"]["terminated"]["reason"] == "Error"
    plane.wait_for(
        lambda: (
            plane.get("pod", "crash", "-n", NS)["status"]["containerStatuses"][0]["state"]
            .get("waiting", {})
            .get("reason")
            == "CrashLoopBackOff"
        ),
        what="back-off",
    )
    plane.wait_for(lambda: plane.get("pod", "once", "-n", NS)["status"]["phase"] == "Failed")
    plane.wait_for(lambda: plane.get("pod", "job", "-n", NS)["status"]["phase"] == "Succeeded")
    once = plane.get("pod", "once", "-n", NS)["status"]["containerStatuses"][0]
    assert once["restartCount"] == 0 and once["state"]["terminated"]["exitCode"] == 3


def test_liveness_failure_restarts_the_container(plane: RunningPlane) -> None:
    plane.apply(
        pod(
            "sick",
            NS,
            server_container(
                "--live-for=0.5",
                livenessProbe={
                    "httpGet": {"path": "/live", "port": 8080},
                    "periodSeconds": 1,
                    "failureThreshold": 1,
                },
            ),
            terminationGracePeriodSeconds=2,
        )
    )
    plane.wait_for(
        lambda: (
            plane.get("pod", "sick", "-n", NS)["status"]["containerStatuses"][0]["restartCount"]
            >= 1
        ),
        timeout=30,
        what="liveness restart",
    )
    reasons = {
        e["reason"]
        for e in plane.get("events", "-n", NS, "--field-selector", "involvedObject.name=sick")[
            "items"
        ]
    }
    assert {"Unhealthy", "Killing", "Started"} <= reasons


def test_missing_command_is_reported(plane: RunningPlane) -> None:
    plane.apply(pod("nocmd", NS, {"name": "c", "image": "vllm/vllm-openai"}))
    waiting = plane.wait_for(
        lambda: (
            plane.get("pod", "nocmd", "-n", NS)["status"]
            .get("containerStatuses", [{}])[0]
            .get("state", {})
            .get("waiting", {})
            .get("message")
        )
    )
    assert "runs only containers with a command" in waiting


def test_logs_follow_ends_with_the_container(plane: RunningPlane) -> None:
    script = "import time\nprint('one', flush=True)\ntime.sleep(1)\nprint('two', flush=True)"
    plane.apply(
        pod(
            "talker",
            NS,
            {"name": "c", "image": "x", "command": ["python", "-c", script]},
            restartPolicy="Never",
        )
    )
    plane.wait_for(
        lambda: (
            plane.get("pod", "talker", "-n", NS)["status"]
            .get("containerStatuses", [{}])[0]
            .get("started")
        ),
        what="talker started",
    )
    start = time.monotonic()
    out = plane.kubectl("logs", "-f", "talker", "-n", NS, timeout=20)
    assert out.stdout.split() == ["one", "two"] and time.monotonic() - start < 10


# Reads the projected token, CA and namespace, then calls the API server with them.
IN_CLUSTER_CLIENT = """
import json, os, ssl, sys, urllib.request
token, ca, ns = (open(p).read() for p in sys.argv[1:4])
host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
url = f"https://{host}:{port}/api/v1/namespaces/{ns}/configmaps/kube-root-ca.crt"
request = urllib.request.Request(url, headers={"Authorization": "Bearer " + token})
with urllib.request.urlopen(request, context=ssl.create_default_context(cadata=ca)) as r:
    body = json.load(r)
print("answered", r.status, body["data"]["ca.crt"] == ca, flush=True)
"""


def test_a_projected_service_account_token_reaches_the_api_server(plane: RunningPlane) -> None:
    """As a pod that projects its token (the router's discovery): the root CA publisher's
    `kube-root-ca.crt`, the token and the namespace, mounted where the args say."""
    mount = "/var/run/secrets/infleet/kube-api"
    sources = [
        {"serviceAccountToken": {"path": "token", "expirationSeconds": 3600}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace",
                                    "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
    ]  # fmt: skip
    container = {
        "name": "client",
        "image": "ignored:latest",
        "command": ["python", "-c", IN_CLUSTER_CLIENT],
        "args": [f"{mount}/token", f"{mount}/ca.crt", f"{mount}/namespace"],
        "volumeMounts": [{"name": "kube-api", "mountPath": mount, "readOnly": True}],
    }
    plane.apply(
        pod("in-cluster", NS, container, restartPolicy="Never",
            automountServiceAccountToken=False,
            volumes=[{"name": "kube-api", "projected": {"sources": sources}}])
    )  # fmt: skip
    plane.wait_for(
        lambda: plane.get("pod", "in-cluster", "-n", NS)["status"].get("phase") == "Succeeded",
        what="the in-cluster client to finish",
    )
    assert "answered 200 True" in plane.kubectl("logs", "in-cluster", "-n", NS).stdout
    # Every namespace has the CA, and a deleted copy comes back.
    plane.kubectl("delete", "configmap", "kube-root-ca.crt", "-n", NS)
    plane.wait_for(lambda: plane.get("configmap", "kube-root-ca.crt", "-n", NS), what="the CA back")


def test_an_engine_refusal_becomes_the_terminated_message(plane: RunningPlane, tmp_path) -> None:
    """The real `infleet serve` given an architecture it does not run: exit code 2 and its
    one line in the container's terminated state (what the operator's Degraded reads)."""
    import json
    import sys

    model = tmp_path / "gptj"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"architectures": ["GPTJForCausalLM"]}))
    engine = {
        "name": "engine",
        "image": "x",
        "command": [sys.executable, "-m", "infleet", "serve", f"--model={model}"],
    }
    plane.apply(pod("refused", NS, engine, restartPolicy="Never"))
    plane.wait_for(
        lambda: plane.get("pod", "refused", "-n", NS)["status"]["phase"] == "Failed",
        timeout=120,
        what="the engine to exit",
    )
    done = plane.get("pod", "refused", "-n", NS)["status"]["containerStatuses"][0]["state"]
    assert done["terminated"]["exitCode"] == 2
    message = done["terminated"]["message"]
    assert message.startswith("infleet serve: unsupported model architecture GPTJForCausalLM")
    assert "supported: LlamaForCausalLM" in message and "Qwen3MoeForCausalLM" in message
    assert "\n" not in message.strip()
