"""The one table of engine metric names (infleet.autoscaler.engines.ENGINE_METRICS) against
what reads or exports them: docs/contracts.md's copy, the bundled engine's registry
(engine/metrics.py), the chart's alert rules, and the operator's per-service rules."""

from __future__ import annotations

import re

from prometheus_client import generate_latest

from infleet.autoscaler.engines import ENGINE_METRICS, FIELDS, EngineMetricNames
from infleet.autoscaler.scrape import samples
from infleet.engine.metrics import EngineMetrics
from infleet.operator.engines import ENGINES
from infleet.operator.monitoring import recording_rules
from tests.charts.paths import CONTRACTS_DOC, RULES

COLUMNS = (*FIELDS, "ttft_histogram", "itl_histogram")


def names(row: EngineMetricNames, column: str) -> tuple[str, ...]:
    value = getattr(row, column)
    return (value,) if isinstance(value, str) else tuple(value or ())


def test_contracts_doc_lists_the_table_as_it_is():
    text = CONTRACTS_DOC.read_text()
    header = "| kind | " + " | ".join(f"`{c}`" for c in COLUMNS) + " |"
    assert header in text, "docs/contracts.md: the engine metric table's columns changed"
    documented = {}
    for line in text[text.index(header) :].splitlines()[2:]:
        if not line.startswith("| `"):
            break
        kind, *cells = [c.strip() for c in line.strip("|").split("|")]
        documented[kind.strip("`")] = [tuple(re.findall(r"`([^`]+)`", c)) for c in cells]
    assert documented == {
        kind: [names(row, c) for c in COLUMNS] for kind, row in ENGINE_METRICS.items()
    }


def test_the_bundled_engine_exports_its_row():
    metrics = EngineMetrics("m")
    metrics.ttft.observe(0.2)
    metrics.itl.observe(0.01)
    metrics.record_finish("stop", 1.0)  # request_success_total is labelled by reason
    exported = set(samples(generate_latest(metrics.registry).decode()))
    # Families: a counter's samples end in _total, a histogram's in _bucket/_sum/_count.
    families = {re.sub(r"_(bucket|sum|count)$", "", n) for n in exported} | exported
    row = ENGINE_METRICS["infleet"]
    wanted = {names(row, c)[0] for c in COLUMNS if names(row, c)}
    assert wanted <= families, wanted - families


def test_chart_alerts_read_only_engine_series_of_the_table():
    known = {n for row in ENGINE_METRICS.values() for c in COLUMNS for n in names(row, c)}
    text = RULES.read_text()
    # Raw engine series: a prefix and one name (a recorded series has a second colon).
    raw = set(re.findall(r"\b((?:infleet|vllm|sglang):[a-z_]+)\b(?!:)", text))
    raw = {re.sub(r"_(bucket|sum|count)$", "", n) for n in raw}
    assert raw and raw <= known, raw - known


def test_the_operators_per_service_rules_use_each_kinds_names():
    assert set(ENGINES) == set(ENGINE_METRICS)
    for kind, profile in ENGINES.items():
        exprs = " ".join(r["expr"] for r in recording_rules("team-a", "chat", profile))
        row = ENGINE_METRICS[kind]
        assert f"{row.waiting[0]}{{" in exprs
        for histogram in (row.ttft_histogram, row.itl_histogram):
            assert histogram is None or f"{histogram}_bucket{{" in exprs
