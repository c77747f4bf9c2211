"""Spot pods always carry the spot toleration and selector; dedicated pods never do."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infleet.operator.errors import SpecError
from infleet.operator.presets import PRESETS
from infleet.operator.render import render_children
from tests.operator.samples import engine_isvc, isvc

SPOT = {
    "gke": ("cloud.google.com/gke-spot", "true"),
    "eks": ("eks.amazonaws.com/capacityType", "SPOT"),
    "karpenter": ("karpenter.sh/capacity-type", "spot"),
    "aks": ("kubernetes.azure.com/scalesetpriority", "spot"),
}


def pods(service):
    deployments = [c for c in render_children(service) if c["kind"] == "Deployment"]
    return {
        d["metadata"]["labels"]["infleet.io/pool"]: d["spec"]["template"]["spec"]
        for d in deployments
    }


def not_in_terms(pod):
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    return [t["matchExpressions"] for t in terms["nodeSelectorTerms"]]


@pytest.mark.parametrize("preset", sorted(SPOT))
def test_presets(preset):
    key, value = SPOT[preset]
    spec = {"capacity": {"spot": {"enabled": True, "preset": preset}}}
    by_pool = pods(isvc(**spec, resources={"gpuProduct": "X-GPU"}))
    spot, dedicated = by_pool["spot"], by_pool["dedicated"]
    spot_toleration = {"key": key, "operator": "Equal", "value": value, "effect": "NoSchedule"}
    assert spot["nodeSelector"][key] == value
    assert spot_toleration in spot["tolerations"]
    assert key not in dedicated.get("nodeSelector", {})
    assert all(t.get("key") != key for t in dedicated["tolerations"])
    assert not_in_terms(dedicated) == [[{"key": key, "operator": "NotIn", "values": [value]}]]
    gpu_label = "cloud.google.com/gke-accelerator" if preset == "gke" else "nvidia.com/gpu.product"
    assert spot["nodeSelector"][gpu_label] == dedicated["nodeSelector"][gpu_label] == "X-GPU"
    gpu = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    assert gpu in spot["tolerations"] and gpu in dedicated["tolerations"]


def test_custom_preset_uses_the_users_selector_tolerations_and_affinity():
    affinity = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}}
    spot_toleration = {"key": "spot", "operator": "Exists", "effect": "NoSchedule"}
    custom = {
        "preset": "custom",
        "enabled": True,
        "nodeSelector": {"pool": "cheap", "tier": "spot"},
        "tolerations": [spot_toleration],
        "affinity": affinity,
    }
    by_pool = pods(isvc(capacity={"spot": custom}))
    assert by_pool["spot"]["nodeSelector"] == {"pool": "cheap", "tier": "spot"}
    assert spot_toleration in by_pool["spot"]["tolerations"]
    assert by_pool["spot"]["affinity"] == affinity
    # A node is spot only with every label, so a dedicated pod needs to lack just one.
    assert not_in_terms(by_pool["dedicated"]) == [
        [{"key": "pool", "operator": "NotIn", "values": ["cheap"]}],
        [{"key": "tier", "operator": "NotIn", "values": ["spot"]}],
    ]
    assert spot_toleration not in by_pool["dedicated"]["tolerations"]


def test_no_gpu_no_gpu_toleration_and_dedicated_node_selector():
    by_pool = pods(
        isvc(
            resources={"gpus": 0},
            capacity={"dedicated": {"nodeSelector": {"infleet.io/capacity": "dedicated"}}},
        )
    )
    assert by_pool["dedicated"]["tolerations"] == []
    assert by_pool["dedicated"]["nodeSelector"] == {"infleet.io/capacity": "dedicated"}
    limits = by_pool["dedicated"]["containers"][0]["resources"]["limits"]
    assert "nvidia.com/gpu" not in limits


@pytest.mark.parametrize(
    "toleration",
    [
        {"key": "cloud.google.com/gke-spot", "operator": "Exists"},
        {"operator": "Exists"},  # tolerates every taint, the spot one included
    ],
)
def test_dedicated_toleration_of_the_spot_taint_is_refused(toleration):
    with pytest.raises(SpecError) as err:
        render_children(isvc(capacity={"dedicated": {"tolerations": [toleration]}}))
    assert str(err.value) == (
        "capacity.dedicated.tolerations[0]: tolerates the spot taint; "
        "dedicated pods must never land on spot nodes"
    )


@settings(max_examples=40, deadline=None)
@given(
    kind=st.sampled_from(["infleet", "vllm", "sglang", "tgi"]),
    mix=st.sampled_from(["dedicated-only", "spot-only", "mixed"]),
    preset=st.sampled_from(sorted(SPOT)),
    gpus=st.integers(0, 2),
)
def test_spot_and_dedicated_never_mix_up(kind, mix, preset, gpus):
    service = engine_isvc(
        kind,
        mix,
        capacity={"spot": {"preset": preset}},
        resources={"gpus": gpus},
        engine={"parallelism": {"tensor": max(gpus, 1)}},  # a replica's GPUs are its TP ranks
    )
    by_pool = pods(service)
    (spot_toleration,) = PRESETS[preset].toleration()
    assert ("spot" in by_pool) == (mix != "dedicated-only")  # a Deployment per pool in the spec
    if "spot" in by_pool:
        assert spot_toleration in by_pool["spot"]["tolerations"]
        assert PRESETS[preset].selector().items() <= by_pool["spot"]["nodeSelector"].items()
    assert spot_toleration not in by_pool["dedicated"]["tolerations"]
    assert not set(PRESETS[preset].selector()) & set(by_pool["dedicated"].get("nodeSelector", {}))
