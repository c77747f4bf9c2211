"""The issue's spot-storm goal, run in full: through a storm of spot reclaims, ours keeps
99% of requests within the TTFT target where a spot-only fleet does not. (The diurnal
goal, 24 simulated hours per policy, is measured in docs/autoscaling.md.)"""

import pytest

from infleet.autoscaler.simulator.results import summary
from infleet.autoscaler.simulator.run import simulate
from infleet.autoscaler.simulator.scenarios import get_scenario


@pytest.mark.slow
def test_spot_storm_ours_keeps_the_slo_where_spot_only_does_not():
    storm = get_scenario("spot-storm")
    ours = summary(simulate(storm, "infleet", 1))
    spot_only = summary(simulate(storm, "spot-only", 1))
    assert ours["slo_attainment"] >= 0.99
    assert spot_only["slo_attainment"] < 0.99
    assert spot_only["spot_interruptions"] > ours["spot_interruptions"]
    assert ours["gpu_hours"]["dedicated"] > 0 and ours["gpu_hours"]["spot"] > 0
