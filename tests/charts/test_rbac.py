"""The chart's RBAC grants exactly what the operator's code uses, in both modes."""

from typing import Any

import pytest

from tests.charts.helm import NAMESPACE, NAMESPACED, by_kind, one, render
from tests.charts.operator_needs import Need, operator_needs

RULES_FILE = "charts/infleet-operator/templates/_rbac_rules.tpl"


def granted(role: dict[str, Any]) -> set[Need]:
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def assert_exactly(role: dict[str, Any], needs: set[Need]) -> None:
    where = f"{role['kind']}/{role['metadata']['name']}"
    missing, spare = sorted(needs - granted(role)), sorted(granted(role) - needs)
    assert missing == [], f"{where} lacks what the operator calls; add to {RULES_FILE}"
    assert spare == [], f"{where} grants what the operator never calls; drop from {RULES_FILE}"


@pytest.fixture(scope="module")
def needs() -> dict[str, set[Need]]:
    return operator_needs()


def lease_role(objects) -> dict[str, Any]:
    (role,) = [r for r in by_kind(objects, "Role") if r["metadata"]["namespace"] == NAMESPACE]
    return role


def test_cluster_mode_grants_exactly_the_operator_needs_cluster_wide(needs):
    objects = render()
    assert_exactly(one(objects, "ClusterRole"), needs["cluster"] | needs["namespaced"])
    assert_exactly(lease_role(objects), needs["release"])


def test_namespaced_mode_grants_namespaced_needs_only_in_watched_namespaces(needs):
    objects = render(*NAMESPACED)
    assert_exactly(one(objects, "ClusterRole"), needs["cluster"])
    roles = [r for r in by_kind(objects, "Role") if r["metadata"]["namespace"] != NAMESPACE]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    for role in roles:
        assert_exactly(role, needs["namespaced"])
    assert_exactly(lease_role(objects), needs["release"])


def test_only_the_operators_own_lease_may_be_read_or_renewed():
    objects = render()
    args = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    lease = next(a.split("=", 1)[1] for a in args if a.startswith("--lease-name="))
    for rule in lease_role(objects)["rules"]:
        if set(rule["verbs"]) - {"create"}:  # create cannot be narrowed to a name
            assert rule["resourceNames"] == [lease]


def test_no_wildcards_anywhere():
    for obj in render() + render(*NAMESPACED):
        for rule in obj.get("rules", []):
            for key in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[key], f"{obj['kind']}: wildcard {key}"


def test_the_operator_never_needs_to_write_spec_of_its_own_resource(needs):
    # GitOps: the InferenceService's spec belongs to git. kopf's metadata patches need `patch`
    # on the object, but nothing may `update` (replace) it wholesale.
    assert ("infleet.io", "inferenceservices", "update") not in needs["namespaced"]
