"""The child watch's drift check: what the server adds is not drift, what it lost is."""

from infleet.operator.drift import contains, drifted
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


def test_a_rendered_child_as_stored_is_intact_until_edited() -> None:
    children = render_children(isvc(**MIXES["mixed"]), RenderOptions())
    deployment = next(c for c in children if c["kind"] == "Deployment")
    stored = {**deployment, "metadata": {**deployment["metadata"], "resourceVersion": "7"}}
    assert not drifted(children, stored)
    edited = {**stored, "spec": {**stored["spec"], "replicas": 9}}
    assert drifted(children, edited)
    unknown = {"kind": "Deployment", "metadata": {"name": "someone-else"}, "spec": {}}
    assert not drifted(children, unknown)  # not ours to put back
