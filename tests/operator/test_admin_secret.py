"""The service's admin key Secret against an emulated API server, through `reconcile`:
created once for a service whose engines guard their feed with it, owned by the service,
never rotated by a later reconcile, referenced by the engines and routers and nowhere
written in full; a LoRA service's key from before (`<service>-lora-admin`) carries over."""

from __future__ import annotations

import base64
import json

import pytest
from kubernetes import client

from infleet.api import GROUP, PLURAL, VERSION
from infleet.operator.kube import Kube, load_config
from infleet.operator.reconcile import reconcile
from infleet.operator.render import RenderOptions
from tests.operator.plane import running_plane, snapshot
from tests.operator.samples import body

pytestmark = pytest.mark.e2e
NS = "default"


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with running_plane(tmp_path_factory.mktemp("plane")) as kubeconfig:
        yield load_config(str(kubeconfig))


def create(api_client, name: str, **spec) -> dict:
    obj = body(name, NS, **spec)
    obj["metadata"] = {"name": name, "namespace": NS}
    custom = client.CustomObjectsApi(api_client)
    return custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, obj)


def run(api_client, name: str) -> None:
    outcome = reconcile(snapshot(api_client, NS, name), Kube(api_client), RenderOptions())
    assert outcome.error is None, outcome


def secret(api_client, name: str) -> client.V1Secret | None:
    try:
        return client.CoreV1Api(api_client).read_namespaced_secret(name, NS)
    except client.ApiException as err:
        assert err.status == 404
        return None


def key_of(found: client.V1Secret) -> str:
    return base64.b64decode(found.data["admin-key"]).decode()


def test_a_keyed_service_gets_one_admin_key_never_rotated(api):
    keys = {"apiKeys": {"secretName": "chat-keys", "format": "key"}}
    service = create(api, "keyed", engine=keys, router={"enabled": True})
    run(api, "keyed")
    first = secret(api, "keyed-admin-key")
    assert first is not None and len(key_of(first)) >= 32
    owner = first.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.uid, owner.controller) == (
        "InferenceService",
        "keyed",
        service["metadata"]["uid"],
        True,
    )
    assert first.metadata.labels["app.kubernetes.io/managed-by"] == "infleet"
    for _ in range(2):
        run(api, "keyed")
    again = secret(api, "keyed-admin-key")
    assert again is not None and key_of(again) == key_of(first)
    assert again.metadata.resource_version == first.metadata.resource_version  # created once
    # The engines and the routers read it by reference; the key is in no child nor status.
    snap = snapshot(api, NS, "keyed")
    refs = {
        c["metadata"]["name"]: e["valueFrom"]["secretKeyRef"]["name"]
        for c in snap.children
        if c["kind"] == "Deployment"
        for container in c["spec"]["template"]["spec"]["containers"]
        for e in container.get("env", [])
        if e["name"] == "INFLEET_ADMIN_API_KEY"
    }
    assert refs == {"keyed-dedicated": "keyed-admin-key", "keyed-router": "keyed-admin-key"}, refs
    assert key_of(first) not in json.dumps([snap.parent, *snap.children])


def test_a_service_without_keys_gets_no_admin_key(api):
    create(api, "open", router={"enabled": True})
    run(api, "open")
    assert secret(api, "open-admin-key") is None


def test_a_lora_service_keeps_the_key_of_its_legacy_secret(api):
    # A LoRA service from before the rename: its engines run with the key of
    # `<service>-lora-admin`; the new Secret gets that key, so none is refused.
    core = client.CoreV1Api(api)
    core.create_namespaced_secret(
        NS,
        {"metadata": {"name": "old-lora-admin"}, "stringData": {"admin-key": "sk-from-before"}},
    )
    create(api, "old", engine={"lora": {"maxAdapters": 2}})
    run(api, "old")
    found = secret(api, "old-admin-key")
    assert found is not None and key_of(found) == "sk-from-before"
    assert found.metadata.owner_references[0].name == "old"
