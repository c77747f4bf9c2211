"""The operator's only Kubernetes I/O: server-side apply, get, status patch, discovery.

Plain, standard calls (any conformant API server, real or emulated, serves them):
children are applied with `application/apply-patch+yaml` under one field manager with
force, so a hand edit of a field we own is taken back on the next apply.
"""

from __future__ import annotations

import json
import time
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from infleet.api import GROUP, PLURAL, VERSION
from infleet.operator.names import FIELD_MANAGER

Obj = dict[str, Any]
APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
CONNECTIONS = 32


def load_config(kubeconfig: str | None) -> client.ApiClient:
    """A client for `kubeconfig`, else $KUBECONFIG / ~/.kube/config, else in-cluster."""
    try:
        configuration = client.Configuration()
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    except config.ConfigException:
        if kubeconfig:
            raise
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)
    # A kept-alive connection per handler thread (kopf's workers and timers); the default
    # (5 per CPU) made busy threads open and drop a new connection per request.
    configuration.connection_pool_maxsize = CONNECTIONS
    return client.ApiClient(configuration)


def _json(response: Any) -> Obj:
    return json.loads(response.data)


class Kube:
    def __init__(self, api: client.ApiClient, discovery_ttl: float = 300.0) -> None:
        self.configuration = api.configuration
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.policy = client.PolicyV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self._discovery_ttl = discovery_ttl
        self._monitoring: tuple[float, bool] | None = None

    def apply(self, obj: Obj) -> Obj:
        """Server-side apply `obj`; returns the live object."""
        kind, meta = obj["kind"], obj["metadata"]
        name, ns = meta["name"], meta["namespace"]
        kw = {"field_manager": FIELD_MANAGER, "force": True, "_content_type": APPLY}
        kw["_preload_content"] = False
        if kind == "Deployment":
            return _json(self.apps.patch_namespaced_deployment(name, ns, obj, **kw))
        if kind == "Service":
            return _json(self.core.patch_namespaced_service(name, ns, obj, **kw))
        if kind == "ConfigMap":
            return _json(self.core.patch_namespaced_config_map(name, ns, obj, **kw))
        if kind == "PodDisruptionBudget":
            return _json(self.policy.patch_namespaced_pod_disruption_budget(name, ns, obj, **kw))
        group, version = obj["apiVersion"].split("/")
        plural = {"ServiceMonitor": "servicemonitors", "PrometheusRule": "prometheusrules"}[kind]
        return _json(
            self.custom.patch_namespaced_custom_object(group, version, ns, plural, name, obj, **kw)
        )

    def get_deployment(self, namespace: str, name: str) -> Obj | None:
        return self._get(
            lambda: self.apps.read_namespaced_deployment(name, namespace, _preload_content=False)
        )

    def get_service(self, namespace: str, name: str) -> Obj | None:
        return self._get(
            lambda: self.core.read_namespaced_service(name, namespace, _preload_content=False)
        )

    def get_child(self, kind: str, namespace: str, name: str) -> Obj | None:
        """A child of one of the kinds the child watch follows."""
        read = {
            "Deployment": self.apps.read_namespaced_deployment,
            "Service": self.core.read_namespaced_service,
            "ConfigMap": self.core.read_namespaced_config_map,
            "PodDisruptionBudget": self.policy.read_namespaced_pod_disruption_budget,
        }[kind]
        return self._get(lambda: read(name, namespace, _preload_content=False))

    def get_inference_service(self, namespace: str, name: str) -> Obj | None:
        return self._get(
            lambda: self.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, _preload_content=False
            )
        )

    @staticmethod
    def _get(call: Any) -> Obj | None:
        try:
            return _json(call())
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    def patch_status(
        self, namespace: str, name: str, status: Obj, resource_version: str | None = None
    ) -> Obj | None:
        """Merge-patch the status subresource (never spec); returns the object written.
        With `resource_version`, the patch applies only to that version: None means
        another writer got there first (or the object is gone)."""
        patch: Obj = {"status": status}
        if resource_version:
            patch["metadata"] = {"resourceVersion": resource_version}
        try:
            return _json(
                self.custom.patch_namespaced_custom_object_status(
                    GROUP,
                    VERSION,
                    namespace,
                    PLURAL,
                    name,
                    patch,
                    field_manager=FIELD_MANAGER,
                    _content_type=MERGE,
                    _preload_content=False,
                )
            )
        except ApiException as err:
            if err.status in (404, 409):
                return None
            raise

    def prometheus_operator(self) -> bool:
        """Whether ServiceMonitor and PrometheusRule exist (discovery, cached for a while)."""
        now = time.monotonic()
        if self._monitoring and now - self._monitoring[0] < self._discovery_ttl:
            return self._monitoring[1]
        try:
            listing = self.custom.get_api_resources("monitoring.coreos.com", "v1")
            names = {r.name for r in listing.resources}
            found = {"servicemonitors", "prometheusrules"} <= names
        except ApiException:
            found = False
        self._monitoring = (now, found)
        return found
