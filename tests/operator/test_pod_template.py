"""spec.template: each customisation reaches the rendered pods, strategic-merge style, and
an attempt to change what the operator owns is Degraded (TemplateConflict) naming the field."""

from __future__ import annotations

import pytest

from infleet.operator.reconcile import plan
from infleet.operator.render import RenderOptions, render_children
from tests.operator.samples import body, engine_isvc

TEMPLATE = {
    "metadata": {"labels": {"cost-center": "ml"}, "annotations": {"example.com/owner": "a"}},
    "spec": {
        "serviceAccountName": "fetcher-identity",
        "automountServiceAccountToken": True,
        "imagePullSecrets": [{"name": "registry"}],
        "priorityClassName": "inference-high",
        "runtimeClassName": "nvidia",
        "securityContext": {"supplementalGroups": [2000], "runAsUser": 4242},
        "volumes": [{"name": "scratch", "emptyDir": {"medium": "Memory"}}],
        "containers": [
            {
                "name": "engine",
                "env": [{"name": "EXTRA", "value": "1"}],
                "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
                "resources": {"limits": {"ephemeral-storage": "20Gi"}},
            },
            {"name": "log-shipper", "image": "fluent/fluent-bit:3.1"},
        ],
        "nodeSelector": {"example.com/zone-class": "gold"},
        "tolerations": [{"key": "example.com/reserved", "operator": "Exists"}],
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
    },
}


def pods(isvc, options=None):
    return {
        d["metadata"]["name"]: d["spec"]["template"]
        for d in render_children(isvc, options or RenderOptions())
        if d["kind"] == "Deployment"
    }


@pytest.mark.parametrize("kind", ["infleet", "vllm", "sglang", "tgi"])
def test_every_customisation_appears_in_every_pool(kind):
    for name, pod in pods(engine_isvc(kind, "mixed", template=TEMPLATE)).items():
        meta, spec = pod["metadata"], pod["spec"]
        assert meta["labels"]["cost-center"] == "ml", name
        assert meta["labels"]["infleet.io/inferenceservice"] == "chat"  # owned labels stay
        assert meta["annotations"]["example.com/owner"] == "a"
        assert spec["serviceAccountName"] == "fetcher-identity"
        assert spec["automountServiceAccountToken"] is True
        assert spec["imagePullSecrets"] == [{"name": "registry"}]
        assert (spec["priorityClassName"], spec["runtimeClassName"]) == ("inference-high", "nvidia")
        # The template's security context merges over the restricted default.
        assert spec["securityContext"]["runAsUser"] == 4242
        assert spec["securityContext"]["supplementalGroups"] == [2000]
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert {"name": "scratch", "emptyDir": {"medium": "Memory"}} in spec["volumes"]
        engine, shipper = spec["containers"]
        assert engine["name"] == "engine" and shipper["name"] == "log-shipper"
        assert engine["env"][-1] == {"name": "EXTRA", "value": "1"}
        assert engine["env"][0]["name"] == "POD_IP"  # the operator's stay, in front
        assert {"name": "scratch", "mountPath": "/scratch"} in engine["volumeMounts"]
        assert engine["resources"]["limits"]["ephemeral-storage"] == "20Gi"
        assert engine["resources"]["limits"]["cpu"] == "2"  # spec.resources still rules
        assert shipper["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert spec["nodeSelector"]["example.com/zone-class"] == "gold"
        assert {"key": "example.com/reserved", "operator": "Exists"} in spec["tolerations"]
        assert "podAntiAffinity" in spec["affinity"]


def test_spot_placement_survives_the_template():
    spot = pods(engine_isvc("vllm", "mixed", template=TEMPLATE))["chat-spot"]["spec"]
    assert spot["nodeSelector"]["cloud.google.com/gke-spot"] == "true"
    dedicated = pods(engine_isvc("vllm", "mixed", template=TEMPLATE))["chat-dedicated"]["spec"]
    assert "requiredDuringSchedulingIgnoredDuringExecution" in dedicated["affinity"]["nodeAffinity"]


OWNED = [
    (
        {"containers": [{"name": "engine", "resources": {"limits": {"nvidia.com/gpu": "8"}}}]},
        "spec.template.spec.containers[engine].resources.limits.nvidia.com/gpu: set by "
        "spec.resources.gpus",
    ),
    (
        {"containers": [{"name": "engine", "command": ["sh"]}]},
        "spec.template.spec.containers[engine].command: the engine container's own field",
    ),
    (
        {"containers": [{"name": "engine", "env": [{"name": "POD_IP", "value": "x"}]}]},
        "spec.template.spec.containers[engine].env[POD_IP]: env var 'POD_IP' is the operator's",
    ),
    (
        {"volumes": [{"name": "model-cache", "emptyDir": {}}]},
        "spec.template.spec.volumes[model-cache]: volume 'model-cache' is the operator's",
    ),
    (
        {"nodeSelector": {"cloud.google.com/gke-spot": "true"}},
        "spec.template.spec.nodeSelector.cloud.google.com/gke-spot: the dedicated pool's placement",
    ),
    (
        {"tolerations": [{"key": "cloud.google.com/gke-spot", "operator": "Exists"}]},
        "spec.template.spec.tolerations[0]: tolerates the spot taint on the dedicated pool",
    ),
    (
        {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {}}}},
        "spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution",
    ),
]


@pytest.mark.parametrize(("overlay", "message"), OWNED, ids=[m.split(":")[0] for _, m in OWNED])
def test_overriding_an_owned_field_is_degraded_naming_it_and_touches_nothing(overlay, message):
    spec = {"capacity": {"spot": {"enabled": True}}, "template": {"spec": overlay}}
    spec["model"] = {"uri": "hf://org/model"}  # fetched: the pods have a model-cache volume
    p = plan(body(**spec), RenderOptions())
    assert p.children == [] and p.problem is not None
    assert p.problem.reason == "TemplateConflict"
    assert p.problem.message.startswith(message), p.problem.message


def test_an_owned_label_is_a_conflict_but_the_same_value_is_not():
    same = {"metadata": {"labels": {"infleet.io/inferenceservice": "chat"}}}
    assert plan(body(template=same), RenderOptions()).problem is None
    other = {"metadata": {"labels": {"infleet.io/inferenceservice": "other"}}}
    problem = plan(body(template=other), RenderOptions()).problem
    assert problem.message.startswith(
        "spec.template.metadata.labels.infleet.io/inferenceservice: the operator sets it"
    )


def test_a_field_outside_the_template_is_refused_by_name():
    p = plan(body(template={"spec": {"hostNetwork": True}}), RenderOptions())
    assert p.problem.reason == "InvalidSpec"
    assert "spec.template.spec.hostNetwork: Extra inputs are not permitted" in p.problem.message
