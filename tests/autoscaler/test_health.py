"""Seeing a service: the MetricsUnavailable condition's decision and the per-service
series of failed reads and blindness (prometheus_client's own exposition)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from infleet.autoscaler.adapter import spec_from
from infleet.autoscaler.exporter import AutoscalerMetrics
from infleet.autoscaler.health import MetricsFailure, metrics_condition
from infleet.autoscaler.policy import PolicyState, decide
from infleet.autoscaler.view import Observation
from tests.autoscaler.fleet_obs import observe, pods

REFUSED = MetricsFailure("scrape", "chat-d0", "ConnectError", "ConnectError: refused", since=0.0)
FORBIDDEN = MetricsFailure("scrape", "chat-d1", "Rejected", "HTTP 403 Forbidden", True, 0.0)


def test_a_fleet_read_in_full_has_metrics():
    c = metrics_condition(0.0, 4, 0, [], 100.0, 60.0)
    assert (c.type, c.status, c.reason) == ("MetricsUnavailable", False, "MetricsAvailable")
    assert c.message == "4 of 4 replicas read"


def test_blind_past_the_grace_period_is_a_condition_with_the_last_error():
    assert not metrics_condition(30.0, 4, 4, [REFUSED], 30.0, 60.0).status  # within grace
    c = metrics_condition(90.0, 4, 4, [REFUSED], 90.0, 60.0)
    assert c.status and c.reason == "NoReplicaMetrics"
    assert (
        "no replica's metrics since 1970-01-01T00:00:00Z" in c.message
        and "chat-d0: ConnectError" in c.message
    )


def test_a_permanent_4xx_is_a_condition_at_once():
    c = metrics_condition(0.0, 4, 1, [FORBIDDEN], 5.0, 60.0)
    assert c.status and c.reason == "MetricsEndpointRejected" and "HTTP 403" in c.message


def test_some_replicas_unreadable_for_the_grace_period():
    assert not metrics_condition(0.0, 4, 1, [REFUSED], 30.0, 60.0).status
    c = metrics_condition(0.0, 4, 1, [REFUSED], 70.0, 60.0)
    assert c.status and c.reason == "ReplicasUnreadable" and "1 of 4 replicas" in c.message


def _samples(registry) -> dict:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_failed_reads_unknown_replicas_and_blindness_are_series_per_service():
    registry = CollectorRegistry()
    exporter = AutoscalerMetrics(registry)
    spec = spec_from({"minReplicas": 1, "maxReplicas": 8}, {"dedicated": {"min": 1}})
    fleet = pods(3, 0)
    d = decide(spec, observe(0.0, fleet, 0.0, 3.0, 0.0), PolicyState())
    blind = Observation(100.0, [], fleet, [], 0.0)  # none read
    d = decide(spec, blind, d.state)
    exporter.record("team-a", "chat", spec, blind, d)
    exporter.record_failures("team-a", "chat", [REFUSED, REFUSED, FORBIDDEN])
    exporter.record_failures("team-b", "rag", [])
    found = _samples(registry)
    service = (("inferenceservice", "chat"), ("namespace", "team-a"))
    assert found["infleet_autoscaler_unknown_replicas", service] == 3.0
    assert found["infleet_autoscaler_blind_seconds", service] == 100.0
    key = "infleet_autoscaler_metrics_failures_total"
    refused = tuple(sorted((*service, ("reason", "ConnectError"), ("source", "scrape"))))
    assert found[key, refused] == 2.0
    exporter.forget("team-a", "chat")
    assert "team-a" not in generate_latest(registry).decode()
