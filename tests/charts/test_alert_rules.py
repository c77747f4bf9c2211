"""The alert rules: promtool-valid, unit-tested alert by alert, documented, on contract names."""

import re
import subprocess

import pytest
import yaml

from tests.charts.paths import CONTRACTS_DOC, HERE, OPERATIONS_DOC, RULES, tool

PROMTOOL_TESTS = sorted((HERE / "promtool").glob("*.test.yaml"))
BURN_WINDOWS = ("5m", "30m", "1h", "6h")


def rules() -> list[dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def alerts() -> dict[str, dict]:
    return {rule["alert"]: rule for rule in rules() if "alert" in rule}


def github_anchor(heading: str) -> str:
    """The fragment GitHub gives a Markdown heading."""
    slug = re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower())
    return slug.replace(" ", "-")


def test_promtool_check_rules_passes():
    out = subprocess.run(
        [tool("promtool"), "check", "rules", str(RULES)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.slow
def test_promtool_unit_tests_pass():
    assert PROMTOOL_TESTS, "no promtool unit tests found"
    out = subprocess.run(
        [tool("promtool"), "test", "rules", *map(str, PROMTOOL_TESTS)],
        capture_output=True,
        text=True,
        cwd=HERE / "promtool",
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_alert_is_proven_to_fire_and_to_stay_quiet():
    fires, quiet = set(), set()
    for path in PROMTOOL_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert set(alerts()) - fires == set(), "alerts with no test that they fire"
    assert set(alerts()) - quiet == set(), "alerts with no test that they stay quiet"
    assert fires | quiet <= set(alerts()), "tests name an alert the rules lack"


@pytest.mark.parametrize("name", sorted(alerts()))
def test_alert_has_severity_message_and_a_runbook_that_exists(name: str):
    rule = alerts()[name]
    assert rule["labels"]["severity"] in ("critical", "warning")
    notes = rule["annotations"]
    assert set(notes) == {"summary", "description", "runbook_url"}
    if "inferenceservice" in rule["expr"]:
        # A service alert names the service in both lines, so a page is actionable alone.
        for key in ("summary", "description"):
            assert "{{ $labels.namespace }}/{{ $labels.inferenceservice }}" in notes[key]
    url, _, anchor = notes["runbook_url"].partition("#")
    assert url.endswith("/docs/operations.md") and anchor
    headings = re.findall(r"^#+ (.+)$", OPERATIONS_DOC.read_text(), flags=re.MULTILINE)
    assert anchor in {github_anchor(h) for h in headings}, f"no runbook heading for #{anchor}"


@pytest.mark.parametrize("budget", ["spot_preemption_budget", "request_preemption_budget"])
def test_burn_rate_windows_differ_only_in_their_window(budget: str):
    by_name = {rule.get("record"): rule["expr"] for rule in rules()}
    base = by_name[f"inferenceservice:infleet_{budget}:burnrate5m"]
    for window in BURN_WINDOWS:
        expr = by_name[f"inferenceservice:infleet_{budget}:burnrate{window}"]
        assert expr == base.replace("[5m]", f"[{window}]")


def test_rules_read_only_series_pinned_in_the_contracts():
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    used = set()
    for rule in rules():
        used |= set(re.findall(r"(?<![\w:])(infleet[_:][a-z0-9_:]+)", rule["expr"]))
    contracts = CONTRACTS_DOC.read_text()
    missing = {name for name in used - recorded if re.sub(r"_bucket$", "", name) not in contracts}
    assert missing == set(), "docs/contracts.md does not pin these series"
