"""The pvc:// upload's Kubernetes calls, in the adapter's (tenant's) namespace: whether
its claim exists, its upload Job and token Secret (created, read, deleted), and the
termination message of the Job's last failed pod (the uploader's one-line reason)."""

from __future__ import annotations

from typing import Any

from kubernetes.client.exceptions import ApiException

from infleet.operator.kube import Kube

Obj = dict[str, Any]


class PvcKube:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    def claim_exists(self, namespace: str, claim: str) -> bool:
        fn = self.kube.core.read_namespaced_persistent_volume_claim
        return self.kube.read(fn, claim, namespace) is not None

    def job(self, namespace: str, name: str) -> Obj | None:
        return self.kube.read(self.kube.batch.read_namespaced_job, name, namespace)

    def create(self, obj: Obj) -> bool:
        """Creates the Job or Secret `obj`; False when one of that name exists already."""
        ns = obj["metadata"]["namespace"]
        fn = {
            "Job": self.kube.batch.create_namespaced_job,
            "Secret": self.kube.core.create_namespaced_secret,
        }[obj["kind"]]
        try:
            self.kube.call(fn, ns, obj, fenced=True)
        except ApiException as err:
            if err.status == 409:
                return False
            raise
        return True

    def delete(self, namespace: str, name: str) -> None:
        """Deletes the upload Job (its pods with it) and its Secret, where they exist."""
        for fn, kw in (
            (self.kube.batch.delete_namespaced_job, {"propagation_policy": "Background"}),
            (self.kube.core.delete_namespaced_secret, {}),
        ):
            try:
                self.kube.call(fn, name, namespace, fenced=True, **kw)
            except ApiException as err:
                if err.status != 404:
                    raise

    def failed_pod_message(self, namespace: str, job: str) -> str:
        """The termination message of the Job's most recent failed pod; "" when none."""
        fn = self.kube.core.list_namespaced_pod
        found = self.kube.read(fn, namespace, label_selector=f"job-name={job}") or {}
        messages = []
        for pod in found.get("items") or []:
            for status in (pod.get("status") or {}).get("containerStatuses") or []:
                ended = (status.get("state") or {}).get("terminated") or {}
                if ended.get("exitCode") and ended.get("message"):
                    messages.append((ended.get("finishedAt") or "", ended["message"].strip()))
        return max(messages)[1].splitlines()[-1] if messages else ""
