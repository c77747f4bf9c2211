"""Per-pool replicas: the capacity split, the autoscaler's decision, the manual override."""

import pytest

from infleet.api import InferenceService
from infleet.operator.replicas import PoolReplicas, plan_replicas
from tests.operator.samples import body, isvc

MIXED = {
    "scaling": {"minReplicas": 3, "maxReplicas": 6},
    "capacity": {"dedicated": {"min": 1}, "spot": {"enabled": True, "max": 2}},
}


def with_status(spec, **status):
    obj = body(**spec)
    obj["status"] = status
    return InferenceService.model_validate(obj)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"scaling": {"minReplicas": 2}}, PoolReplicas(2, 0)),
        (MIXED, PoolReplicas(1, 2)),
        # spot capped at 2: the remainder goes back to dedicated
        ({**MIXED, "scaling": {"minReplicas": 5, "maxReplicas": 6}}, PoolReplicas(3, 2)),
        ({"capacity": {"dedicated": {"min": 0}, "spot": {"enabled": True}}}, PoolReplicas(0, 1)),
        ({"scaling": {"minReplicas": 0, "scaleToZero": {"enabled": True}}}, PoolReplicas(0, 0)),
    ],
)
def test_split_of_min_replicas(spec, expected):
    assert plan_replicas(isvc(**spec)) == expected


def test_manual_override_is_clamped_and_split():
    assert plan_replicas(isvc(**MIXED, replicas=4)) == PoolReplicas(2, 2)
    assert plan_replicas(isvc(**MIXED, replicas=50)) == PoolReplicas(4, 2)


def decision(dedicated, spot):
    return {
        "time": "2026-01-01T00:00:00Z",
        "dedicated": dedicated,
        "spot": spot,
        "reason": "QueueAboveTarget",
    }


def test_autoscaler_decision_wins_while_it_fits_the_spec():
    assert plan_replicas(with_status(MIXED, lastScalingDecision=decision(3, 2))) == PoolReplicas(
        3, 2
    )
    # more spot than capacity.spot.max allows, or above maxReplicas: back to the split
    assert plan_replicas(with_status(MIXED, lastScalingDecision=decision(1, 3))) == PoolReplicas(
        1, 2
    )
    assert plan_replicas(with_status(MIXED, lastScalingDecision=decision(6, 2))) == PoolReplicas(
        1, 2
    )
    # spot disabled after the decision: none on spot
    no_spot = {**MIXED, "capacity": {"spot": {"enabled": False}}}
    assert plan_replicas(with_status(no_spot, lastScalingDecision=decision(1, 2))) == PoolReplicas(
        3, 0
    )


def test_decision_splits_a_manual_override_of_the_same_total():
    pinned = {**MIXED, "replicas": 4}
    assert plan_replicas(with_status(pinned, lastScalingDecision=decision(3, 1))) == PoolReplicas(
        3, 1
    )
    assert plan_replicas(with_status(pinned, lastScalingDecision=decision(3, 2))) == PoolReplicas(
        2, 2
    )


def test_each_plan_says_where_its_counts_come_from():
    """Status quotes it when a service is scaled to zero on purpose."""
    zero = {**MIXED, "scaling": {"minReplicas": 0, "scaleToZero": {"enabled": True}}}
    assert plan_replicas(with_status(zero)).why == "scaling.minReplicas is 0"
    assert plan_replicas(with_status({**zero, "replicas": 0})).why == "spec.replicas is 0"
    decided = {"time": "2026-01-01T00:00:00Z", "dedicated": 0, "spot": 0, "reason": "Idle"}
    planned = plan_replicas(with_status(zero, lastScalingDecision=decided))
    assert (planned.total, planned.why) == (0, "the autoscaler's decision (Idle)")
