"""The operator as a Deployment on the local plane, shaped like the Helm chart's
(namespace `infleet-system`, two replicas electing a leader on a Lease, rolling updates),
so `kubectl rollout restart` and `kubectl logs` work on it as on a cluster. It reaches the API server through the
generated kubeconfig, mounted from a ConfigMap (images are ignored; the process runs
`infleet operator` from this machine's venv)."""

from __future__ import annotations

from typing import Any

NAMESPACE = "infleet-system"
NAME = "infleet-operator"
LABELS = {"app.kubernetes.io/name": "infleet-operator", "app.kubernetes.io/component": "operator"}


def operator_manifests(kubeconfig_yaml: str) -> list[dict[str, Any]]:
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"{NAME}-kubeconfig", "namespace": NAMESPACE},
            "data": {"config": kubeconfig_yaml},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": LABELS},
            "spec": {
                "replicas": 2,  # one leads, one stands by
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
                },
                "selector": {"matchLabels": LABELS},
                "template": {
                    "metadata": {"labels": LABELS},
                    "spec": {
                        "terminationGracePeriodSeconds": 10,
                        "containers": [
                            {
                                "name": "operator",
                                "image": "ghcr.io/infleet/infleet:local",
                                "command": ["infleet", "operator"],
                                "args": [
                                    f"--lease-name={NAME}",
                                    "--all-namespaces",
                                    "--metrics-port=0",
                                    "--liveness-port=0",
                                ],
                                "env": [
                                    {
                                        "name": "KUBECONFIG",
                                        "value": "/etc/infleet/kubeconfig/config",
                                    },
                                    {"name": "PYTHONUNBUFFERED", "value": "1"},
                                    *(
                                        {
                                            "name": name,
                                            "valueFrom": {"fieldRef": {"fieldPath": path}},
                                        }
                                        for name, path in (
                                            ("POD_NAME", "metadata.name"),
                                            ("POD_NAMESPACE", "metadata.namespace"),
                                            # the adapter store's address (engines fetch)
                                            ("POD_IP", "status.podIP"),
                                        )
                                    ),
                                ],
                                "volumeMounts": [
                                    {"name": "kubeconfig", "mountPath": "/etc/infleet/kubeconfig"}
                                ],
                            }
                        ],
                        "volumes": [
                            {"name": "kubeconfig", "configMap": {"name": f"{NAME}-kubeconfig"}}
                        ],
                    },
                },
            },
        },
    ]
