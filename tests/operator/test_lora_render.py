"""LoRA in the rendered pods: every LoRA-capable engine kind from the one engine table,
valid against the Kubernetes schemas; nothing in the template depends on which adapters
exist; the admin key only ever by reference."""

from __future__ import annotations

import json

import kubernetes_validate
import pytest
import yaml

from infleet.api.tenants import Tenant, hash_key, parse_keys
from infleet.operator.errors import SpecError
from infleet.operator.lora_service import render_api_keys, tenants
from infleet.operator.render import render_children
from tests.operator.pod_security_standard import violations
from tests.operator.samples import engine_isvc
from tests.operator.test_render import SUPPORTED

LORA = {"lora": {"maxAdapters": 4, "maxCpuAdapters": 8, "maxRank": 32}}


def deployment(kind: str, **engine):
    children = render_children(engine_isvc(kind, "mixed", engine={**LORA, **engine}))
    return next(c for c in children if c["kind"] == "Deployment"), children


def engine_container(dep):
    return next(c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == "engine")


@pytest.mark.parametrize("kind", ["infleet", "vllm", "sglang"])
def test_lora_pods_validate_against_the_strict_schemas(kind):
    _, children = deployment(kind)
    for child in children:
        kubernetes_validate.validate(child, f"1.{SUPPORTED[-1][1]}.0", strict=True)


def test_vllm_gets_lora_flags_and_runtime_loading():
    c = engine_container(deployment("vllm")[0])
    assert {"--enable-lora", "--max-loras=4", "--max-cpu-loras=8", "--max-lora-rank=32"} <= set(
        c["args"]
    )
    assert {"name": "VLLM_ALLOW_RUNTIME_LORA_UPDATING", "value": "True"} in c["env"]


def test_sglang_gets_lora_flags():
    c = engine_container(deployment("sglang")[0])
    assert {"--enable-lora", "--max-loras-per-batch=4", "--max-lora-rank=32"} <= set(c["args"])


def test_infleet_reads_the_set_and_the_admin_key_by_reference():
    dep, children = deployment("infleet", args=["--max-num-seqs=8"])
    config = next(c for c in children if c["kind"] == "ConfigMap")["data"]["engine.yaml"]
    assert "enable-lora: true" in config and "max-lora-rank: 32" in config
    c = engine_container(dep)
    assert c["args"][-3:] == ["--lora-set=/etc/infleet/lora", "--lora-dir=/var/lib/infleet/lora",
                              "--max-num-seqs=8"]  # fmt: skip
    key = next(e for e in c["env"] if e["name"] == "INFLEET_ADMIN_API_KEY")
    assert key["valueFrom"] == {"secretKeyRef": {"name": "chat-admin-key", "key": "admin-key"}}
    volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert volumes["lora-set"]["configMap"] == {"name": "chat-lora", "optional": True}


@pytest.mark.parametrize(
    "kind,load,unload,port",
    [("vllm", "/v1/load_lora_adapter", "/v1/unload_lora_adapter", 8000),
     ("sglang", "/load_lora_adapter", "/unload_lora_adapter", 30000)],
)  # fmt: skip
def test_vllm_and_sglang_get_the_sync_sidecar_from_the_engine_table(kind, load, unload, port):
    dep, _ = deployment(kind, apiKeys={"secretName": "engine-key"})
    pod = dep["spec"]["template"]["spec"]
    sync = next(c for c in pod["containers"] if c["name"] == "lora-sync")
    assert sync["command"] == ["infleet", "lora-sync"]
    assert sync["image"].startswith("ghcr.io/infleet/infleet-operator:")
    assert {f"--engine-url=http://$(POD_IP):{port}", f"--load-path={load}",
            f"--unload-path={unload}", "--set-dir=/etc/infleet/lora",
            "--lora-dir=/var/lib/infleet/lora"} <= set(sync["args"])  # fmt: skip
    # The readiness gate: the pod is Ready only once the sidecar has loaded the set.
    assert sync["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "lora-sync"}
    env = {e["name"]: e.get("valueFrom") for e in sync["env"]}
    assert env["INFLEET_ADMIN_API_KEY"] == {
        "secretKeyRef": {"name": "chat-admin-key", "key": "admin-key"}
    }
    assert env["INFLEET_ENGINE_API_KEY"] == {
        "secretKeyRef": {"name": "engine-key", "key": "api-key"}
    }
    # The engine reads the downloaded adapters, never writes them.
    mounts = {m["name"]: m for m in engine_container(dep)["volumeMounts"]}
    assert mounts["lora-cache"] == {"name": "lora-cache", "mountPath": "/var/lib/infleet/lora",
                                    "readOnly": True}  # fmt: skip
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["lora-set"]["configMap"] == {"name": "chat-lora", "optional": True}
    assert violations(pod) == []  # Pod Security "restricted", the sidecar included


@pytest.mark.parametrize("kind", ["infleet", "vllm", "sglang"])
def test_the_template_does_not_depend_on_the_adapters(kind):
    isvc = engine_isvc(kind, "mixed", engine=LORA)
    none = render_children(isvc)
    some = render_children(isvc, adapters=["support-bot", "other"])
    templates = [
        [c["spec"]["template"] for c in children if c["kind"] == "Deployment"]
        for children in (none, some)
    ]
    assert templates[0] == templates[1]


@pytest.mark.parametrize("kind", ["vllm", "sglang"])
@pytest.mark.parametrize("admits", [{"allowedNamespaces": ["team-b"]},
                                    {"namespaceSelector": {"matchLabels": {"t": "1"}}}])  # fmt: skip
def test_vllm_and_sglang_refuse_other_tenants_adapters_by_field(kind, admits):
    field = next(iter(admits))
    with pytest.raises(SpecError, match=rf"engine\.lora\.{field}") as err:
        deployment(kind, lora={**LORA["lora"], **admits})
    assert err.value.reason == "UnsupportedByEngine"


def test_no_lora_no_lora_parts():
    children = render_children(engine_isvc("infleet", "mixed"))
    dep = next(c for c in children if c["kind"] == "Deployment")
    assert "lora" not in str(dep)


def test_tgi_still_refuses_lora():
    with pytest.raises(SpecError, match=r"engine\.lora\.maxAdapters"):
        render_children(engine_isvc("tgi", "mixed", engine=LORA))


def test_a_service_admitting_other_namespaces_authenticates():
    own_only = engine_container(deployment("infleet")[0])
    assert not any(a.startswith("--api-keys-file") for a in own_only["args"])
    dep, _ = deployment("infleet", lora={**LORA["lora"], "allowedNamespaces": ["team-b"]})
    c = engine_container(dep)
    assert "--api-keys-file=/etc/infleet/api-keys/keys.yaml" in c["args"]
    volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert volumes["api-keys"]["configMap"] == {"name": "chat-api-keys"}


def test_only_hashes_of_the_tenants_keys_reach_the_service():
    isvc = engine_isvc("infleet", "mixed", engine={"lora": {**LORA["lora"],
                       "allowedNamespaces": ["team-b", "team-c"]}})  # fmt: skip
    assert tenants(isvc) == ["team-a", "team-b", "team-c"]
    assert tenants(engine_isvc("infleet", "mixed", engine=LORA)) == []
    service = {"apiVersion": "infleet.io/v1alpha1", "metadata": isvc.metadata}
    cm = render_api_keys(service, {"team-b": [hash_key("secret-key")]})
    # The engine's and router's own parser reads it: the key maps to its namespace.
    table = parse_keys(yaml.safe_load(cm["data"]["keys.yaml"]))
    assert table == {hash_key("secret-key"): Tenant("team-b")}
    assert "secret-key" not in json.dumps(cm)


def test_spec_api_keys_tenants_is_the_one_keys_file_of_a_lora_tenant_service():
    lora = {**LORA["lora"], "allowedNamespaces": ["team-b"]}
    dep, children = deployment(
        "infleet", lora=lora, apiKeys={"secretName": "my-keys", "format": "tenants"}
    )
    c = engine_container(dep)
    assert not any(a.startswith("--api-keys-file") for a in c["args"])
    config = next(c for c in children if c["kind"] == "ConfigMap")["data"]["engine.yaml"]
    assert "api-keys-file: /etc/infleet/api-keys/keys.yaml" in config
    keys = [v for v in dep["spec"]["template"]["spec"]["volumes"] if v["name"] == "api-keys"]
    assert [v["secret"]["secretName"] for v in keys] == ["my-keys"]
    kubernetes_validate.validate(dep, f"1.{SUPPORTED[-1][1]}.0", strict=True)
