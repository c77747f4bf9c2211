"""The policy's state survives a restart: a compact, versioned snapshot and back."""

from __future__ import annotations

import dataclasses
import json

import pytest

from infleet.autoscaler.adapter import spec_from
from infleet.autoscaler.policy import PolicyState, decide
from infleet.autoscaler.simulator.run import simulate
from infleet.autoscaler.simulator.scenarios import get_scenario
from infleet.autoscaler.state import SNAPSHOT_VERSION, restore, snapshot
from tests.autoscaler.fleet_obs import PERIOD, observe, pods


@pytest.fixture(scope="module")
def stormy():
    """Our policy as it ends three simulated hours of a spot storm."""
    scenario = dataclasses.replace(get_scenario("spot-storm"), duration_s=3 * 3600.0, warmup_s=0.0)
    return simulate(scenario, "infleet", 1).policy_at_end


def test_a_snapshot_is_small_json_and_restores_what_the_policy_learned(stormy):
    state = stormy.state
    data = snapshot(state)
    text = json.dumps(data)
    assert data["v"] == SNAPSHOT_VERSION and len(text) < 12_000, len(text)
    back = restore(json.loads(text))
    assert back.total == state.total and back.pools == state.pools
    assert back.capacity.factors.keys() == state.capacity.factors.keys()
    assert back.spot.shift == pytest.approx(state.spot.shift, abs=1e-4)
    assert len(back.spot.interruptions) == len(state.spot.interruptions) > 0
    now = state.last_now
    for window in (300.0, 3600.0, 6 * 3600.0):
        assert back.spot.rate(now, window, 1.0) == pytest.approx(
            state.spot.rate(now, window, 1.0), rel=1e-3
        )
    assert back.lead_time_s == pytest.approx(state.lead_time_s, abs=0.1)
    assert (
        back.damping.recommendations.samples[-1][1] == state.damping.recommendations.samples[-1][1]
    )


def test_a_restored_policy_keeps_the_spot_burn_and_does_not_scale_down_at_once(stormy):
    """The spot burn history (finding 3) and the stabilization survive; a restored policy
    reads a full window before it shrinks anything."""
    state = restore(snapshot(stormy.state))
    spec = stormy.spec
    now = stormy.state.last_now + 30.0
    fleet = pods(*stormy.state.pools)
    d = decide(spec, observe(now, fleet, 0.0, 0.0, 0.0), state)
    assert d.total >= stormy.state.total
    assert d.state.spot.shift == pytest.approx(stormy.state.spot.shift, abs=0.01)


def test_another_version_or_a_broken_snapshot_is_refused():
    data = snapshot(decide_once())
    with pytest.raises(ValueError, match=f"version 1, expected {SNAPSHOT_VERSION}"):
        restore({**data, "v": 1})  # bursts in replicas, not req/s: started cold
    with pytest.raises(ValueError, match="malformed"):
        restore({**data, "spot": {"shift": "x"}})
    with pytest.raises(ValueError, match="version None"):
        restore([])  # type: ignore[arg-type]


def decide_once() -> PolicyState:
    spec = spec_from({"minReplicas": 1, "maxReplicas": 10}, {"dedicated": {"min": 1}})
    state = PolicyState()
    for i in range(3):
        state = decide(spec, observe(i * PERIOD, pods(2, 0), 0.0, 4.0, 10.0 * i), state).state
    return state
