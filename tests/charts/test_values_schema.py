"""values.schema.json stops bad values before anything is installed, naming the field."""

import pytest

from tests.charts.helm import RELEASE, helm
from tests.charts.paths import CHART

HEADER = "Error: values don't meet the specifications of the schema(s) in the following chart(s):"

# (--set values, the exact line helm prints)
CASES = [
    (
        ["rbac.mode=namespace"],
        'rbac.mode: rbac.mode must be one of the following: "cluster", "namespaced"',
    ),
    (["rbac.mode=namespaced"], "rbac.watchNamespaces: Array must have at least 1 items"),
    (["rbac.watchNamespaces={team-a}"], "rbac.watchNamespaces: Array must have at most 0 items"),
    (
        ["rbac.mode=namespaced", "rbac.watchNamespaces={Team_A}"],
        "rbac.watchNamespaces.0: Does not match pattern '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'",
    ),
    (["rbac.watchNamespace=team-a"], "rbac: Additional property watchNamespace is not allowed"),
    (["replicaCount=-1"], "replicaCount: Must be greater than or equal to 0"),
    (
        ["leaderElection.leaseDuration=1"],
        "leaderElection.leaseDuration: Must be greater than or equal to 2",
    ),
    (["operator.metricsPort=80"], "operator.metricsPort: Must be greater than or equal to 1024"),
    (["image.repository="], "image.repository: String length must be greater than or equal to 1"),
    (
        ["image.pullPolicy=Sometimes"],
        'image.pullPolicy: image.pullPolicy must be one of the following: "Always", "IfNotPresent", "Never"',
    ),
    (
        ["serviceMonitor.interval=30"],
        "serviceMonitor.interval: Invalid type. Expected: string, given: integer",
    ),
    (
        ["prometheusRule.runbookBaseURL=docs/operations.md"],
        "prometheusRule.runbookBaseURL: Does not match pattern '^https?://[^#]+$'",
    ),
    (
        ["serviceMonitorr.enabled=false"],
        "(root): Additional property serviceMonitorr is not allowed",
    ),
]


@pytest.mark.parametrize(("values", "message"), CASES, ids=[" ".join(v) for v, _ in CASES])
def test_bad_values_fail_with_a_message_naming_the_field(values: list[str], message: str):
    args = [arg for value in values for arg in ("--set", value)]
    out = helm("template", RELEASE, str(CHART), *args)
    assert out.returncode != 0
    lines = [line.removeprefix("- ") for line in out.stderr.splitlines()]
    assert lines[0] == HEADER
    assert message in lines, out.stderr


def test_good_values_pass():
    out = helm(
        "template", RELEASE, str(CHART),
        "--set", "rbac.mode=namespaced", "--set", "rbac.watchNamespaces={team-a,team-b}",
        "--set", "replicaCount=0", "--set", "image.tag=1.2.3",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
