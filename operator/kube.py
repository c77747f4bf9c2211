"""The operator's Kubernetes I/O: every call bounded, counted, and fenced by the lease.

- Every request carries a timeout (`api_timeout`), and urllib3 does not retry on its own:
  the controller retries with backoff, so an API server that stops answering costs one
  timeout per attempt, never a hung worker.
- Timeouts, refused connections, 5xx and 429 answers count in
  infleet_operator_api_errors_total{reason}.
- Every write first asks the fence (the leader elector): a replica that does not hold the
  lease raises NotLeader instead of writing.

Children are applied with `application/apply-patch+yaml` under one field manager with
force, so a hand edit of a field the operator owns is taken back on the next apply.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from infleet.api import GROUP, PLURAL, VERSION
from infleet.operator.lws import API_VERSION as LWS_API_VERSION
from infleet.operator.metrics import API_ERRORS
from infleet.operator.names import FIELD_MANAGER

Obj = dict[str, Any]
APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
CONNECTIONS = 32
API_TIMEOUT_S = 10.0
# Children of custom resource kinds, applied through the custom-objects API.
CUSTOM_PLURALS = {
    "ServiceMonitor": "servicemonitors",
    "PrometheusRule": "prometheusrules",
    "LeaderWorkerSet": "leaderworkersets",  # a replica across nodes (operator/lws.py)
}


class NotLeader(RuntimeError):
    """A write was refused: this replica does not hold the lease (or no longer does)."""


def load_config(kubeconfig: str | None, user_agent: str | None = None) -> client.ApiClient:
    """A client for `kubeconfig`, else $KUBECONFIG / ~/.kube/config, else in-cluster."""
    try:
        configuration = client.Configuration()
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    except config.ConfigException:
        if kubeconfig:
            raise
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)
    # A kept-alive connection per worker thread; the default (5 per CPU) made busy threads
    # open and drop a new connection per request.
    configuration.connection_pool_maxsize = CONNECTIONS
    configuration.retries = False  # ours, with backoff (operator/controller.py)
    api = client.ApiClient(configuration)
    if user_agent:
        api.user_agent = user_agent
    return api


def reason(err: BaseException) -> str | None:
    """The metric's reason for an API failure; None for an answer the caller expects."""
    if isinstance(err, urllib3.exceptions.TimeoutError):
        return "timeout"
    if isinstance(err, urllib3.exceptions.HTTPError | OSError):
        return "unreachable"
    status = getattr(err, "status", None) or 0
    if status == 429:
        return "throttled"
    return "server_error" if status >= 500 else None


def as_json(response: Any) -> Obj:
    return json.loads(response.data)


class Kube:
    """Thin calls; `fence` raises NotLeader when this replica may not write."""

    def __init__(
        self,
        api: client.ApiClient,
        fence: Callable[[], None] = lambda: None,
        timeout: float = API_TIMEOUT_S,
        identity: str = FIELD_MANAGER,
    ) -> None:
        self.configuration, self.fence, self.timeout = api.configuration, fence, timeout
        self.identity, self.user_agent = identity, api.user_agent
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.policy = client.PolicyV1Api(api)
        self.networking = client.NetworkingV1Api(api)
        self.rbac = client.RbacAuthorizationV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.coordination = client.CoordinationV1Api(api)
        self.version = client.VersionApi(api)

    def call(self, fn: Callable[..., Any], *args: Any, fenced: bool = False, **kw: Any) -> Any:
        """One bounded request; `fenced` (every write but the lease's own) only while the
        fence allows it."""
        if fenced:
            self.fence()
        kw.setdefault("_request_timeout", self.timeout)
        try:
            return fn(*args, **kw)
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as err:
            why = reason(err)
            if why:
                API_ERRORS.labels(why).inc()
            raise

    def read(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Obj | None:
        """A GET as JSON; None when the object does not exist."""
        try:
            return as_json(self.call(fn, *args, _preload_content=False, **kw))
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    def apply(self, obj: Obj) -> Obj:
        """Server-side apply `obj`; returns the live object."""
        kind, meta = obj["kind"], obj["metadata"]
        name, ns = meta["name"], meta["namespace"]
        kw = {"field_manager": FIELD_MANAGER, "force": True, "_content_type": APPLY}
        kw["_preload_content"] = False
        patch: dict[str, Callable[..., Any]] = {
            "Deployment": self.apps.patch_namespaced_deployment,
            "Service": self.core.patch_namespaced_service,
            "ConfigMap": self.core.patch_namespaced_config_map,
            "PodDisruptionBudget": self.policy.patch_namespaced_pod_disruption_budget,
            "NetworkPolicy": self.networking.patch_namespaced_network_policy,
            "ServiceAccount": self.core.patch_namespaced_service_account,
            "Role": self.rbac.patch_namespaced_role,
            "RoleBinding": self.rbac.patch_namespaced_role_binding,
        }
        if kind in patch:
            return as_json(self.call(patch[kind], name, ns, obj, fenced=True, **kw))
        group, version = obj["apiVersion"].split("/")
        plural = CUSTOM_PLURALS[kind]
        fn = self.custom.patch_namespaced_custom_object
        return as_json(self.call(fn, group, version, ns, plural, name, obj, fenced=True, **kw))

    def delete_child(self, kind: str, namespace: str, name: str, uid: str) -> None:
        """Deletes that child (a Deployment's pods follow in the background); a newer one
        of the same name, or none at all, is left alone."""
        body = {"preconditions": {"uid": uid}, "propagationPolicy": "Background"}
        delete: dict[str, Callable[..., Any]] = {
            "Deployment": self.apps.delete_namespaced_deployment,
            "Service": self.core.delete_namespaced_service,
            "ConfigMap": self.core.delete_namespaced_config_map,
            "PodDisruptionBudget": self.policy.delete_namespaced_pod_disruption_budget,
            "ServiceAccount": self.core.delete_namespaced_service_account,
            "Role": self.rbac.delete_namespaced_role,
            "RoleBinding": self.rbac.delete_namespaced_role_binding,
        }
        if kind == "LeaderWorkerSet":
            group, version = LWS_API_VERSION.split("/")
            fn = self.custom.delete_namespaced_custom_object
            args: tuple[str, ...] = (group, version, namespace, "leaderworkersets", name)
        else:
            fn, args = delete[kind], (name, namespace)
        try:
            self.call(fn, *args, body=body, fenced=True)
        except ApiException as err:
            if err.status not in (404, 409):
                raise

    def post_event(self, about: Obj, type_: str, reason_: str, message: str, now: str) -> None:
        """A core/v1 Event on `about` (an InferenceService), from this replica."""
        meta = about["metadata"]
        ref = {"apiVersion": about.get("apiVersion"), "kind": about.get("kind")}
        ref |= {k: meta.get(k) for k in ("name", "namespace", "uid", "resourceVersion")}
        event = {
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": ref,
            "type": type_,
            "reason": reason_,
            "message": message[:1024],
            "source": {"component": FIELD_MANAGER},
            "reportingComponent": FIELD_MANAGER,
            "reportingInstance": self.identity[:128],
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        self.call(self.core.create_namespaced_event, meta["namespace"], event, fenced=True)

    def get_inference_service(self, namespace: str, name: str) -> Obj | None:
        fn = self.custom.get_namespaced_custom_object
        return self.read(fn, GROUP, VERSION, namespace, PLURAL, name)

    def patch_status(
        self, namespace: str, name: str, status: Obj, resource_version: str
    ) -> Obj | None:
        """Merge-patch the status subresource (never spec) of that version of the object;
        returns what was written, or None when another writer got there first (or it is
        gone)."""
        patch = {"status": status, "metadata": {"resourceVersion": resource_version}}
        fn = self.custom.patch_namespaced_custom_object_status
        return self._patch_service(fn, namespace, name, patch, MERGE, (404, 409))

    def patch_metadata(self, namespace: str, name: str, ops: list[Obj]) -> Obj | None:
        """A JSON patch of the InferenceService's metadata (its `test` ops guard it); None
        when it no longer applies."""
        fn = self.custom.patch_namespaced_custom_object
        # 422: a `test` op failed, the metadata changed meanwhile
        return self._patch_service(fn, namespace, name, ops, JSON_PATCH, (404, 409, 422))

    def _patch_service(
        self,
        fn: Callable[..., Any],
        namespace: str,
        name: str,
        body: Any,
        content_type: str,
        gone_or_changed: tuple[int, ...],
    ) -> Obj | None:
        kw = {"field_manager": FIELD_MANAGER, "_content_type": content_type}
        try:
            response = self.call(
                fn, GROUP, VERSION, namespace, PLURAL, name, body,
                fenced=True, _preload_content=False, **kw,
            )  # fmt: skip
        except ApiException as err:
            if err.status in gone_or_changed:
                return None
            raise
        return as_json(response)
