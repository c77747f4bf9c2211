"""spec.model: where the weights are, the credentials to fetch them, and where they are kept."""

from __future__ import annotations

from typing import ClassVar

from infleet.api.base import CrdModel, Quantity, Rule, field

MODEL_URI_PATTERN = r"^((pvc|hf|s3|https?)://.+|builtin:[a-z0-9][a-z0-9.-]*)$"
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


class SecretRef(CrdModel):
    """A Secret in the service's namespace (only its name is ever rendered)."""

    name: str = field(description="The Secret's name.", pattern=NAME_PATTERN, max_length=253)


class ClaimCache(CrdModel):
    """An existing PersistentVolumeClaim shared by every replica."""

    claim_name: str = field(
        description="The claim: ReadWriteMany, so replicas on every node share it.",
        pattern=NAME_PATTERN,
        max_length=253,
    )


class HostPathCache(CrdModel):
    """A directory on each node (the platform must allow it: Pod Security restricted
    forbids hostPath volumes, so a namespace using it cannot enforce restricted)."""

    path: str = field(
        description="An absolute directory on the node; the platform policy must list it.",
        pattern=r"^/.+",
    )


class ModelCache(CrdModel):
    """Where fetched weights are kept so a new replica does not download them again."""

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "has(self.persistentVolumeClaim) != has(self.hostPath)",
            "model.cache needs exactly one of persistentVolumeClaim and hostPath",
            lambda c: (c.persistent_volume_claim is None) != (c.host_path is None),
        ),
    )

    persistent_volume_claim: ClaimCache | None = field(
        None, description="An existing ReadWriteMany claim shared by every replica."
    )
    host_path: HostPathCache | None = field(
        None, description="A node-local directory (platform opt-in; not Pod Security restricted)."
    )


class ModelSpec(CrdModel):
    """The model to serve (KServe's storageUri, split into uri/name/revision)."""

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "!has(self.credentialsSecretRef) || self.uri.matches('^(hf|s3|https?)://')",
            "model.credentialsSecretRef applies to hf://, s3://, http:// and https:// models",
            lambda m: (
                m.credentials_secret_ref is None
                or m.uri.split("://")[0] in ("hf", "s3", "http", "https")
            ),
        ),
        Rule(
            "!has(self.cache) || self.uri.matches('^(hf|s3|https?)://')",
            "model.cache applies to models that are downloaded: hf://, s3://, http://, https://",
            lambda m: m.cache is None or m.uri.split("://")[0] in ("hf", "s3", "http", "https"),
        ),
    )

    uri: str = field(
        description="Where the weights are: pvc://CLAIM/path, hf://org/model, "
        "s3://bucket/path, http(s)://host/file (a file or a .tar/.zip archive), or "
        "builtin:smollm2-135m-instruct (the bundled engine's embedded model).",
        pattern=MODEL_URI_PATTERN,
    )
    name: str | None = field(
        None,
        description="The model name clients send; unset uses the engine's default.",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._/:-]*$",
        max_length=253,
    )
    revision: str | None = field(
        None, description="Revision (branch, tag or commit) for hf:// models.", max_length=253
    )
    credentials_secret_ref: SecretRef | None = field(
        None,
        description="A Secret whose keys the model fetch gets as credentials: HF_TOKEN for "
        "hf://; AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (AWS_SESSION_TOKEN, "
        "AWS_DEFAULT_REGION, AWS_ENDPOINT_URL optional) for s3://; BEARER_TOKEN for "
        "http(s):// (sent as Authorization: Bearer); the engine never gets them. "
        "Unset: no credentials, or workload identity through the pods' service account.",
    )
    cache: ModelCache | None = field(
        None,
        description="Keep fetched weights where every replica finds them (a new replica does "
        "not download again). Unset: an emptyDir per pod, sized by model.size.",
    )
    size: Quantity | None = field(
        None,
        description="How much disk the weights take (e.g. 16Gi); sizes the per-pod emptyDir "
        "(sizeLimit). Unset: 100Gi.",
    )
