"""API keys for the tenant namespaces a LoRA service admits, against an emulated API server:
those its namespaceSelector matches get a key like the listed ones, and a namespace that
stops matching loses its hash from the service's keys file (its key no longer opens it)."""

from __future__ import annotations

import base64

import pytest
import yaml
from kubernetes import client

from infleet.api import GROUP, PLURAL, VERSION, InferenceService
from infleet.api.tenants import hash_key
from infleet.operator import lora_cache
from infleet.operator.kube import Kube, load_config
from infleet.operator.lora_cache import LoRACache
from infleet.operator.lora_service import prepare, tenants
from tests.operator.plane import running_plane

pytestmark = pytest.mark.e2e
LABEL = "infleet.io/tenant-of"


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with running_plane(tmp_path_factory.mktemp("plane")) as kubeconfig:
        yield load_config(str(kubeconfig))


def namespace(core: client.CoreV1Api, name: str, labels: dict[str, str]) -> None:
    core.create_namespace({"metadata": {"name": name, "labels": labels}})


def relabel(core: client.CoreV1Api, name: str, value: str | None) -> None:
    core.patch_namespace(name, {"metadata": {"labels": {LABEL: value}}})


def keys_file(core: client.CoreV1Api) -> dict[str, list[str]]:
    cm = core.read_namespaced_config_map("base-api-keys", "platform")
    return yaml.safe_load(cm.data["keys.yaml"])


def key_of(core: client.CoreV1Api, ns: str) -> str:
    secret = core.read_namespaced_secret("base-api-key", ns)
    return base64.b64decode(secret.data["api-key"]).decode()


def test_selected_namespaces_get_keys_and_lose_them_when_they_stop_matching(api):
    core = client.CoreV1Api(api)
    namespace(core, "platform", {})
    namespace(core, "team-x", {LABEL: "platform"})
    namespace(core, "team-y", {})
    namespace(core, "team-z", {LABEL: "elsewhere"})
    lora = {"maxAdapters": 2, "allowedNamespaces": ["team-listed"],
            "namespaceSelector": {"matchLabels": {LABEL: "platform"}}}  # fmt: skip
    body = client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, "platform", PLURAL,
        {"apiVersion": f"{GROUP}/{VERSION}", "kind": "InferenceService",
         "metadata": {"name": "base", "namespace": "platform"},
         "spec": {"model": {"uri": "builtin:smollm2-135m-instruct"}, "engine": {"lora": lora}}},
    )  # fmt: skip
    isvc, kube = InferenceService.model_validate(body), Kube(api)

    prepare(kube, body, isvc)
    # Its own namespace and team-x (selected); team-listed does not exist, so no key yet.
    assert set(keys_file(core)) == {"platform", "team-x"}
    x_key = key_of(core, "team-x")
    assert keys_file(core)["team-x"] == [hash_key(x_key)]
    for ns in ("team-y", "team-z"):
        with pytest.raises(client.ApiException):
            core.read_namespaced_secret("base-api-key", ns)

    relabel(core, "team-x", None)
    relabel(core, "team-y", "platform")
    prepare(kube, body, isvc)
    assert set(keys_file(core)) == {"platform", "team-y"}  # team-x's key is revoked
    assert hash_key(x_key) not in str(keys_file(core))
    assert keys_file(core)["team-y"] == [hash_key(key_of(core, "team-y"))]

    # Coming back, it is given its old key again (the Secret is the tenant's, kept).
    relabel(core, "team-x", "platform")
    prepare(kube, body, isvc)
    assert keys_file(core)["team-x"] == [hash_key(x_key)]


def test_tenants_is_the_own_listed_and_selected_namespaces():
    isvc = InferenceService.model_validate({
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "InferenceService",
        "metadata": {"name": "base", "namespace": "platform"},
        "spec": {"model": {"uri": "builtin:smollm2-135m-instruct"},
                 "engine": {"lora": {"maxAdapters": 2, "namespaceSelector": {
                     "matchExpressions": [{"key": "team", "operator": "Exists"}]}}}},
    })  # fmt: skip
    labels = {"a": {"team": "1"}, "b": {}, "platform": {}}
    assert tenants(isvc, labels) == ["a", "platform"]
    assert tenants(isvc, None) == ["platform"]


def test_namespace_events_reach_the_services_that_select_by_label():
    selecting = {"spec": {"engine": {"lora": {"namespaceSelector": {"matchLabels": {"a": "b"}}}}}}
    listing = {"spec": {"engine": {"lora": {"allowedNamespaces": ["x"]}}}}
    cache = LoRACache()
    cache.fill({
        lora_cache.ADAPTERS: {},
        lora_cache.PARENTS: {("p", "sel"): [selecting], ("p", "list"): [listing]},
        lora_cache.PODS: {},
        lora_cache.CONFIG_MAPS: {},
    })  # fmt: skip
    assert cache.selector_services() == [("p", "sel")]
