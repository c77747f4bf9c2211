"""Every rendered pod passes Pod Security "restricted", checked by an independent checker
written from the Pod Security Standards (tests/operator/pod_security_standard.py)."""

from __future__ import annotations

import itertools

import pytest
import yaml

from infleet.api import InferenceService
from infleet.operator.engines import ENGINES
from infleet.operator.render import render_children
from tests.conftest import REPO
from tests.operator.pod_security_standard import violations
from tests.operator.samples import MIXES, engine_isvc

EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
URIS = ["hf://org/model", "s3://bucket/model", "http://models.internal/m.gguf"]


def pod_specs(isvc):
    children = render_children(isvc)
    return {
        d["metadata"]["name"]: d["spec"]["template"]["spec"]
        for d in children
        if d["kind"] == "Deployment"
    }


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_is_admitted_by_restricted(example):
    for doc in yaml.safe_load_all(example.read_text()):
        isvc = InferenceService.model_validate(
            {**doc, "metadata": {"namespace": "default", **doc["metadata"]}}
        )
        for name, spec in pod_specs(isvc).items():
            assert violations(spec) == [], name


@pytest.mark.parametrize(("kind", "mix"), list(itertools.product(ENGINES, MIXES)))
def test_every_engine_kind_and_mix_is_admitted_by_restricted(kind, mix):
    uris = ["builtin:smollm2-135m-instruct", *URIS] if kind == "infleet" else URIS
    for uri in uris:
        caches = (
            [None]
            if uri.startswith("builtin:")
            else [None, {"persistentVolumeClaim": {"claimName": "m"}}]
        )
        for cache in caches:
            model = {"uri": uri, **({"cache": cache} if cache else {})}
            for name, spec in pod_specs(engine_isvc(kind, mix, model=model)).items():
                assert violations(spec) == [], (uri, name)


@pytest.mark.parametrize("kind", ENGINES)
def test_each_engine_kind_runs_as_its_own_non_root_user_with_a_writable_home(kind):
    profile = ENGINES[kind]
    spec = next(iter(pod_specs(engine_isvc(kind, "mixed", model={"uri": URIS[0]})).values()))
    assert spec["securityContext"]["runAsUser"] == profile.run_as_user > 0
    assert spec["automountServiceAccountToken"] is False
    engine = spec["containers"][0]
    env = {e["name"]: e.get("value") for e in engine["env"]}
    mounts = {m["mountPath"]: m["name"] for m in engine["volumeMounts"]}
    assert mounts[env["HOME"]] == "home" and mounts["/tmp"] == "tmp"
    assert env["HF_HOME"].startswith(env["HOME"]) and env["XDG_CACHE_HOME"].startswith(env["HOME"])
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes["home"] and "emptyDir" in volumes["tmp"]
    # The fetcher runs as its image's own user (KServe's storage initializer: USER 1000).
    assert spec["initContainers"][0]["securityContext"]["runAsUser"] == 1000


@pytest.mark.parametrize(
    ("extra", "rule"),
    [
        (
            {"model": {"uri": "hf://a/b", "cache": {"hostPath": {"path": "/var/models"}}}},
            "HostPath",
        ),
        ({"template": {"spec": {"securityContext": {"runAsUser": 0}}}}, "Running as Non-root user"),
        (
            {
                "template": {
                    "spec": {"containers": [{"name": "x", "securityContext": {"privileged": True}}]}
                }
            },
            "Privileged Containers",
        ),
        (
            {"template": {"spec": {"securityContext": {"seccompProfile": {"type": "Unconfined"}}}}},
            "Seccomp",
        ),
    ],
)
def test_the_checker_refuses_what_the_profile_forbids(extra, rule):
    """The check can fail: a hostPath cache (the platform's opt-in) and templates that loosen
    the defaults are caught, each by its row."""
    specs = pod_specs(engine_isvc("vllm", "dedicated-only", **extra))
    found = [v for spec in specs.values() for v in violations(spec)]
    assert any(v.startswith(rule) for v in found), found
