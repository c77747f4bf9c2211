"""`plan`: what a reconcile would apply, or why it must touch nothing."""

from infleet.operator.reconcile import plan
from infleet.operator.render import RenderOptions
from infleet.operator.replicas import PoolReplicas
from tests.operator.samples import body


def test_valid_spec_plans_every_child():
    p = plan(body(scaling={"minReplicas": 2}), RenderOptions())
    assert p.problem is None
    assert [c["kind"] for c in p.children] == [
        "ConfigMap",
        "NetworkPolicy",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
    ]  # fmt: skip (no spot Deployment: spot is not in the spec)
    assert p.replicas == PoolReplicas(2, 0)


def test_spec_the_models_reject_touches_nothing():
    # e.g. stored under an older CRD, or written with validation off
    obj = body(scaling={"minReplicas": 5, "maxReplicas": 2})
    p = plan(obj, RenderOptions())
    assert p.children == [] and p.replicas is None
    assert p.problem.reason == "InvalidSpec"
    assert p.problem.message == (
        "spec.scaling: scaling.minReplicas must be less than or equal to scaling.maxReplicas"
    )


def test_spec_an_engine_cannot_honour_touches_nothing():
    p = plan(
        body(engine={"kind": "tgi", "quantization": "fp4"}, model={"uri": "hf://a/b"}),
        RenderOptions(),
    )
    assert p.children == []
    assert p.problem.reason == "UnsupportedByEngine"
    assert (
        p.problem.message
        == "spec.engine.quantization: quantization fp4 is not supported by engine tgi"
    )
