"""Pod and Deployment manifests running tests/localplane/podserver.py."""

from pathlib import Path
from typing import Any

SERVER = str(Path(__file__).with_name("podserver.py"))
POD_ENV = [
    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
]


def server_container(*extra: str, probe: bool = True, **fields: Any) -> dict[str, Any]:
    c: dict[str, Any] = {
        "name": "app",
        "image": "ignored:latest",
        "command": ["python", SERVER],
        "args": ["--host=$(POD_IP)", "--port=8080", *extra],
        "env": list(POD_ENV),
        "ports": [{"name": "http", "containerPort": 8080}],
        **fields,
    }
    if probe:
        c["readinessProbe"] = {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 1}
    return c


def pod(name: str, ns: str, container: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"containers": [container], **spec},
    }


def deployment(
    name: str, ns: str, replicas: int, container: dict[str, Any], **spec: Any
) -> dict[str, Any]:
    labels = {"app": name}
    pod_spec = {"containers": [container], **spec.pop("pod", {})}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
            **spec,
        },
    }


def service(name: str, ns: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "selector": {"app": name},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        },
    }


SPOT = {
    "nodeSelector": {"cloud.google.com/gke-spot": "true"},
    "tolerations": [
        {
            "key": "cloud.google.com/gke-spot",
            "operator": "Equal",
            "value": "true",
            "effect": "NoSchedule",
        }
    ],
}
