"""Tenant guardrails: a service outside its namespace's platform rule is Degraded
(PolicyViolation, naming the field) and touches no child; one inside it is confined to
the node pools it was granted."""

from __future__ import annotations

import pytest
import yaml

from infleet.operator.policy import PlatformPolicy, load_policy
from infleet.operator.reconcile import plan
from infleet.operator.render import RenderOptions
from tests.operator.samples import body

POOL = "cloud.google.com/gke-nodepool"
POLICY = {
    "nodePools": [
        {"name": "l4", "nodeSelector": {POOL: "l4"}},
        {"name": "l4-spot", "nodeSelector": {POOL: "l4-spot"}},
        {"name": "h100", "nodeSelector": {POOL: "h100"}},
    ],
    "tenants": [
        {
            "name": "research",
            "namespaceSelector": {"matchLabels": {"tier": "research"}},
            "nodePools": ["h100"],
        },
        {
            "name": "product-teams",
            "namespaces": ["team-*"],
            "nodePools": ["l4", "l4-spot"],
            "tolerations": [{"key": "cloud.google.com/gke-spot"}],
            "priorityClasses": ["standard"],
            "maxGpusPerReplica": 2,
            "maxGpus": 8,
            "hostPathCaches": ["/var/lib/models"],
        },
    ],
    "defaults": None,  # a namespace no rule matches is refused
}
SPOT = {"capacity": {"spot": {"enabled": True, "preset": "gke"}}, "scaling": {"maxReplicas": 4}}


def options(labels=None, policy=POLICY):
    return RenderOptions(platform=PlatformPolicy.model_validate(policy), namespace_labels=labels)


def problem(options_, **spec):
    p = plan(body(**{**SPOT, **spec}), options_)
    assert p.children == [] or p.problem is None
    return p.problem


def required_terms(children, pool):
    deployment = next(c for c in children if c["metadata"]["name"] == f"chat-{pool}")
    affinity = deployment["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
    return affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]


def test_a_granted_service_is_confined_to_its_node_pools():
    p = plan(body(**SPOT), options())
    assert p.problem is None
    granted = [{"key": POOL, "operator": "In", "values": ["l4"]}]
    granted_spot = [{"key": POOL, "operator": "In", "values": ["l4-spot"]}]
    spot_terms = required_terms(p.children, "spot")
    assert [t["matchExpressions"] for t in spot_terms] == [granted, granted_spot]
    # Dedicated pods keep avoiding spot nodes, AND stay on the granted pools.
    avoid = {"key": "cloud.google.com/gke-spot", "operator": "NotIn", "values": ["true"]}
    dedicated = [t["matchExpressions"] for t in required_terms(p.children, "dedicated")]
    assert dedicated == [[avoid, *granted], [avoid, *granted_spot]]


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        (
            {
                "capacity": {
                    "dedicated": {"nodeSelector": {POOL: "h100"}},
                    "spot": {"enabled": True},
                }
            },
            "spec.capacity.dedicated.nodeSelector",
            "selects node pool h100, which is not granted in namespace team-a",
        ),
        (
            {
                "template": {
                    "spec": {"tolerations": [{"key": "example.com/reserved", "operator": "Exists"}]}
                }
            },
            "spec.template.spec.tolerations",
            "toleration {key=example.com/reserved, operator=Exists} is not allowed",
        ),
        (
            {"capacity": {"spot": {"enabled": True, "preset": "karpenter"}}},
            "spec.capacity.spot.preset",
            "the spot pool's toleration {key=karpenter.sh/capacity-type",
        ),
        (
            {"template": {"spec": {"priorityClassName": "system-cluster-critical"}}},
            "spec.template.spec.priorityClassName",
            "priority class 'system-cluster-critical' is not allowed",
        ),
        (
            {"resources": {"gpus": 4}, "engine": {"parallelism": {"tensor": 4}}},
            "spec.resources.gpus",
            "4 GPUs per replica",
        ),
        (
            {
                "scaling": {"maxReplicas": 5},
                "resources": {"gpus": 2},
                "engine": {"parallelism": {"tensor": 2}},
            },
            "spec.scaling.maxReplicas",
            "up to 10 GPUs",
        ),
        (
            {"model": {"uri": "hf://a/b", "cache": {"hostPath": {"path": "/mnt/fast"}}}},
            "spec.model.cache.hostPath.path",
            "node directory /mnt/fast is not allowed",
        ),
    ],
    ids=["pool", "toleration", "spot-preset", "priority", "gpus", "total-gpus", "host-path"],
)
def test_outside_the_rule_is_degraded_naming_the_field_and_touches_nothing(spec, field, words):
    found = problem(options(), **spec)
    assert found is not None and found.reason == "PolicyViolation"
    assert found.message.startswith(f"{field}: "), found.message
    assert words in found.message and "platform rule product-teams" in found.message


def test_a_granted_node_directory_is_allowed():
    cache = {"hostPath": {"path": "/var/lib/models/shared"}}
    assert problem(options(), model={"uri": "hf://a/b", "cache": cache}) is None


def test_rules_match_namespace_labels_not_the_services():
    research = options(labels={"tier": "research"})
    other = body(capacity={"dedicated": {"nodeSelector": {POOL: "l4"}}})
    other["metadata"]["namespace"] = "lab"
    found = plan(other, research).problem
    assert found.message.startswith("spec.capacity.dedicated.nodeSelector: ")
    assert "node pool l4, which is not granted in namespace lab" in found.message
    other["spec"]["capacity"]["dedicated"] = {"nodeSelector": {POOL: "h100"}}
    assert plan(other, research).problem is None
    # The same labels on the InferenceService itself choose nothing.
    other["metadata"]["labels"] = {"tier": "research"}
    found = plan(other, options(labels={})).problem
    assert found.message == "metadata.namespace: no platform policy rule admits namespace lab"


def test_a_policy_file_naming_an_undefined_pool_is_refused(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text(
        yaml.safe_dump({"tenants": [{"name": "a", "namespaces": ["a"], "nodePools": ["x"]}]})
    )
    with pytest.raises(ValueError, match=r"tenant a: nodePools \['x'\] are not defined"):
        load_policy(path)
    path.write_text("tenants: [{name: a, nodepools: []}]\n")
    with pytest.raises(ValueError, match=r"tenants\.0\.nodepools: Extra inputs are not permitted"):
        load_policy(path)


def test_unmatched_namespaces_get_unlimited_defaults_but_no_node_directory():
    empty = options(policy={})
    eight = {"resources": {"gpus": 8}, "engine": {"parallelism": {"tensor": 8}}}
    assert plan(body(**SPOT, **eight), empty).problem is None
    cache = {"hostPath": {"path": "/var/lib/models"}}
    found = plan(body(model={"uri": "hf://a/b", "cache": cache}), empty).problem
    assert found.reason == "PolicyViolation"
    assert found.message.startswith("spec.model.cache.hostPath.path: node directory")
    assert "(platform rule defaults)" in found.message
