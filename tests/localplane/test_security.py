"""The local plane's front door: HTTPS that real clients verify against the kubeconfig's
CA, a per-plane bearer token (401 without it), and only Kubernetes media types (415)."""

import base64
from pathlib import Path

import httpx
import pytest
import urllib3
import yaml
from kubernetes import client, config

from infleet.localplane.credentials import issue
from tests.localplane.harness import RunningPlane
from tests.localplane.manifests import namespace

CONFIGMAPS = "/api/v1/namespaces/sec/configmaps"


def _kubeconfig(plane: RunningPlane) -> dict:
    return yaml.safe_load(plane.kubeconfig.read_text())


def _variant(
    plane: RunningPlane, name: str, *, ca_pem: bytes | None = None, token: str = ""
) -> Path:
    """The plane's kubeconfig with another CA or token, written beside it."""
    kc = _kubeconfig(plane)
    if ca_pem is not None:
        kc["clusters"][0]["cluster"]["certificate-authority-data"] = base64.b64encode(
            ca_pem
        ).decode()
    if token:
        kc["users"][0]["user"]["token"] = token
    path = plane.dir / name
    path.write_text(yaml.safe_dump(kc))
    return path


def _python_client(kubeconfig: Path) -> client.CoreV1Api:
    return client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))


def test_kubeconfig_carries_the_ca_and_a_random_token(plane: RunningPlane) -> None:
    kc = _kubeconfig(plane)
    cluster, user = kc["clusters"][0]["cluster"], kc["users"][0]["user"]
    assert cluster["server"].startswith("https://127.0.0.1:")
    assert base64.b64decode(cluster["certificate-authority-data"]) == plane.plane.credentials.ca_pem
    assert len(user["token"]) >= 40 and user["token"] != issue().token
    assert plane.kubeconfig.stat().st_mode & 0o077 == 0  # the token is readable by its owner only


def test_kubectl_and_the_python_client_verify_the_servers_certificate(
    plane: RunningPlane,
) -> None:
    plane.apply(namespace("sec"))
    assert "sec" in plane.kubectl("get", "ns", "-o", "name").stdout
    names = [n.metadata.name for n in _python_client(plane.kubeconfig).list_namespace().items]
    assert "sec" in names
    # Another CA (a plane of its own) does not vouch for this server: both clients refuse.
    stranger = _variant(plane, "stranger-ca", ca_pem=issue().ca_pem)
    refused = plane.kubectl("--kubeconfig", str(stranger), "get", "ns", check=False)
    assert refused.returncode != 0
    assert "certificate signed by unknown authority" in refused.stderr
    with pytest.raises(urllib3.exceptions.MaxRetryError) as err:
        _python_client(stranger).list_namespace(_request_timeout=5)
    assert isinstance(err.value.reason, urllib3.exceptions.SSLError)
    assert "CERTIFICATE_VERIFY_FAILED" in str(err.value.reason)


def test_plain_http_is_not_served(plane: RunningPlane) -> None:
    with pytest.raises(httpx.HTTPError):
        httpx.get(plane.plane.url.replace("https://", "http://") + "/version", timeout=5)


def test_requests_without_the_token_get_401(plane: RunningPlane) -> None:
    ca = plane.plane.credentials.client_context()
    for headers in ({}, {"Authorization": "Bearer infleet-local"}, {"Authorization": "Basic eDp5"}):
        for method, path in (("GET", "/version"), ("GET", "/api/v1/namespaces")):
            r = httpx.request(method, plane.plane.url + path, headers=headers, verify=ca)
            assert r.status_code == 401, (headers, path)
            assert r.json() | {"metadata": {}} == {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": "Unauthorized",
                "reason": "Unauthorized",
                "code": 401,
            }
    wrong = _variant(plane, "wrong-token", token="not-the-token")
    refused = plane.kubectl("--kubeconfig", str(wrong), "get", "ns", check=False)
    assert refused.returncode != 0 and "Unauthorized" in refused.stderr
    with pytest.raises(client.ApiException) as err:
        _python_client(wrong).list_namespace()
    assert err.value.status == 401


def test_bodies_in_other_media_types_get_415_and_create_nothing(plane: RunningPlane) -> None:
    plane.apply(namespace("sec"))
    body = '{"metadata": {"name": "from-a-web-page"}}'
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        r = plane.http.post(CONFIGMAPS, content=body, headers={"Content-Type": ctype})
        assert r.status_code == 415, ctype
        assert r.json()["reason"] == "UnsupportedMediaType"
        assert "application/json" in r.json()["message"]
    # Without the token the same page learns nothing more: 401 before the body is read.
    anonymous = httpx.post(
        plane.plane.url + CONFIGMAPS,
        content=body,
        headers={"Content-Type": "text/plain"},
        verify=plane.plane.credentials.client_context(),
    )
    assert anonymous.status_code == 401
    assert plane.kubectl("get", "cm", "from-a-web-page", "-n", "sec", check=False).returncode
    # The media types Kubernetes clients send still work: JSON and YAML bodies, patches.
    made = plane.http.post(CONFIGMAPS, content=body, headers={"Content-Type": "application/json"})
    assert made.status_code == 201
    # No Content-Type at all is JSON, as kube-apiserver reads it (the kubernetes Python
    # client sends its JSON bodies so).
    bare = plane.http.post(CONFIGMAPS, content='{"metadata": {"name": "no-type"}}')
    assert "Content-Type" not in bare.request.headers and bare.status_code == 201
    made = plane.http.post(
        CONFIGMAPS,
        content="metadata: {name: yaml-body}\ndata: {a: b}\n",
        headers={"Content-Type": "application/yaml"},
    )
    assert made.status_code == 201 and made.json()["data"] == {"a": "b"}
    patched = plane.http.patch(
        f"{CONFIGMAPS}/yaml-body",
        content='{"data": {"a": "c"}}',
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert patched.status_code == 200 and patched.json()["data"] == {"a": "c"}
