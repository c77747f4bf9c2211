"""The one quantity parser: the CRD's grammar, numbers in base units, clear refusals."""

import pytest

from infleet.api.quantity import parse_quantity, to_gib


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", 0.5),
        ("2", 2.0),
        (3, 3.0),
        ("1.5", 1.5),
        (".5", 0.5),
        ("16Gi", 16 * 2**30),
        ("1Ki", 1024.0),
        ("100M", 1e8),
        ("2e3", 2000.0),
        ("2E", 2e18),  # exa, not an exponent
        ("-1k", -1000.0),
        ("250u", 250e-6),
    ],
)
def test_parses_kubernetes_quantities(text, value):
    assert parse_quantity(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["lots", "1 Gi", "1GB", "", "1.2.3", "Gi", True])
def test_refuses_what_kubernetes_refuses_naming_the_value(text):
    with pytest.raises(ValueError, match="is not a Kubernetes quantity"):
        parse_quantity(text)


def test_gib_rounds_up_and_is_at_least_one():
    assert to_gib("1Gi") == 1 and to_gib("1500Mi") == 2 and to_gib("1") == 1
