"""The pvc:// upload Job and its token Secret: valid against the Kubernetes schemas, Pod
Security "restricted", the claim read-only, the token only by reference, owned by the
adapter, one Job per generation."""

from __future__ import annotations

import json

import kubernetes_validate
import pytest

from infleet.operator.lora_pvc_job import (
    PvcSource,
    PvcUriError,
    parse_pvc_uri,
    render_upload_job,
    render_upload_secret,
    upload_name,
)
from tests.operator.pod_security_standard import violations
from tests.operator.test_render import SUPPORTED

TOKEN = "a-one-time-token-never-in-clear"
STORE = "http://10.0.0.7:8082"


def adapter(name: str = "support-bot", generation: int = 2) -> dict:
    return {
        "apiVersion": "infleet.io/v1alpha1",
        "kind": "LoRAAdapter",
        "metadata": {"name": name, "namespace": "team-a", "uid": "u-1", "generation": generation},
        "spec": {"inferenceService": "llama", "uri": "pvc://adapters/bots/support"},
    }


def test_uris_parse_and_bad_ones_name_the_field():
    assert parse_pvc_uri("pvc://adapters/bots/support/") == PvcSource("adapters", "bots/support")
    assert parse_pvc_uri("pvc://adapters/a.tar.gz") == PvcSource("adapters", "a.tar.gz")
    assert parse_pvc_uri("pvc://adapters") == PvcSource("adapters", "")
    for bad, words in (("pvc:///x", "claim name"), ("pvc://c/../other", "'..'")):
        with pytest.raises(PvcUriError, match=words):
            parse_pvc_uri(bad)


def test_the_job_and_secret_validate_against_the_strict_schemas():
    job = render_upload_job(adapter(), parse_pvc_uri(adapter()["spec"]["uri"]), "op:1", STORE)
    secret = render_upload_secret(adapter(), TOKEN)
    for obj in (job, secret):
        kubernetes_validate.validate(obj, f"1.{SUPPORTED[-1][1]}.0", strict=True)
        kubernetes_validate.validate(obj, f"1.{SUPPORTED[0][1]}.0", strict=True)


def test_the_pod_is_restricted_reads_the_claim_read_only_and_never_holds_the_token():
    job = render_upload_job(adapter(), PvcSource("adapters", "bots/support"), "op:1", STORE)
    pod = job["spec"]["template"]["spec"]
    assert violations(pod) == []
    assert pod["automountServiceAccountToken"] is False and pod["restartPolicy"] == "Never"
    assert "fsGroup" not in pod["securityContext"]  # never chowns the tenant's volume
    assert pod["volumes"] == [
        {"name": "claim", "persistentVolumeClaim": {"claimName": "adapters", "readOnly": True}}
    ]
    (c,) = pod["containers"]
    assert c["command"] == ["infleet", "lora-upload"]
    assert c["args"] == ["--source=/adapter-claim/bots/support", f"--store={STORE}"]
    assert all(m["readOnly"] for m in c["volumeMounts"])
    (env,) = c["env"]
    assert env["valueFrom"]["secretKeyRef"]["name"] == job["metadata"]["name"]
    assert TOKEN not in json.dumps(job)
    assert render_upload_secret(adapter(), TOKEN)["stringData"] == {"token": TOKEN}


def test_both_are_owned_by_the_adapter_in_its_namespace():
    for obj in (
        render_upload_job(adapter(), PvcSource("c", ""), "op:1", STORE),
        render_upload_secret(adapter(), TOKEN),
    ):
        assert obj["metadata"]["namespace"] == "team-a"
        (owner,) = obj["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"]) == ("LoRAAdapter", "support-bot", "u-1")
        assert owner["controller"] is True


def test_each_generation_gets_its_own_job_name_within_63_characters():
    assert upload_name("bot", 1) != upload_name("bot", 2)
    assert upload_name("bot", 1) == upload_name("bot", 1)
    long = upload_name("a" * 253, 7)
    assert len(long) <= 63 and long.startswith("a" * 10)
