"""Desired against live children: server defaults are no drift, a lost field is; only a
controlled child of a prunable kind that the spec no longer renders is pruned."""

import copy

from infleet.operator.diff import contains, to_apply, to_prune
from infleet.operator.render import RenderOptions, render_children
from tests.operator.samples import MIXES, isvc


def test_server_defaults_are_not_drift_but_changed_or_missing_fields_are() -> None:
    desired = {"spec": {"replicas": 1, "ports": [{"name": "http", "port": 8000}]}}
    live = {
        "spec": {"replicas": 1, "ports": [{"name": "http", "port": 8000, "protocol": "TCP"}]},
        "status": {"readyReplicas": 1},
    }
    assert contains(live, desired)
    assert not contains({"spec": {**live["spec"], "replicas": 5}}, desired)
    assert not contains({"spec": {"ports": live["spec"]["ports"]}}, desired)  # replicas gone
    two_ports = [*live["spec"]["ports"], {"name": "extra", "port": 9000}]
    assert not contains({"spec": {"replicas": 1, "ports": two_ports}}, desired)


def stored(child: dict) -> dict:
    live = copy.deepcopy(child)
    live["metadata"]["resourceVersion"] = "7"
    return live


def test_only_missing_or_edited_children_are_applied() -> None:
    children = render_children(isvc(**MIXES["mixed"]), RenderOptions())
    live = [stored(c) for c in children]
    assert to_apply(children, live) == []
    kinds = [c["kind"] for c in children]
    first = kinds.index("Deployment")  # ConfigMap, NetworkPolicy, then the pools'
    edited = {**live[first], "spec": {**live[first]["spec"], "replicas": 9}}
    kept = [*live[:first], edited, *live[first + 2 :]]  # the spot pool's is missing
    assert to_apply(children, kept) == [children[first], children[first + 1]]


def test_a_child_rendered_differently_is_applied_even_if_it_already_holds_every_field():
    children = render_children(isvc(**MIXES["mixed"]), RenderOptions())
    old = stored(children[0])
    old["metadata"]["annotations"]["infleet.io/rendered-hash"] = "by-an-older-operator"
    assert to_apply(children[:1], [old]) == children[:1]


def test_prune_takes_only_controlled_deployments_the_spec_dropped() -> None:
    mixed = render_children(isvc(**MIXES["mixed"]), RenderOptions())
    uid = mixed[0]["metadata"]["ownerReferences"][0]["uid"]
    dedicated_only = render_children(isvc(**MIXES["dedicated-only"]), RenderOptions())
    live = [stored(c) for c in mixed]
    (spot,) = to_prune(dedicated_only, live, uid)
    assert spot["metadata"]["name"] == "chat-spot"
    assert to_prune(mixed, live, uid) == []
    assert to_prune(dedicated_only, live, "another-owner") == []
    foreign = {**spot, "metadata": {**spot["metadata"], "ownerReferences": []}}
    assert to_prune(dedicated_only, [foreign], uid) == []  # not ours, though labelled
    config_map = {**live[0], "metadata": {**live[0]["metadata"], "name": "chat-old-engine"}}
    assert to_prune(dedicated_only, [config_map], uid) == []  # a kind the operator keeps
