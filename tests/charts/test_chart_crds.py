"""The chart ships exactly the CRDs generated from api/ (crds/), byte for byte."""

from tests.charts.helm import by_kind, render
from tests.charts.paths import CHART
from tests.conftest import REPO

FIX = "refresh the chart's copy: cp crds/*.yaml charts/infleet-operator/crds/"


def test_chart_crds_are_the_generated_crds():
    generated = {p.name: p.read_text() for p in (REPO / "crds").glob("*.yaml")}
    shipped = {p.name: p.read_text() for p in (CHART / "crds").glob("*.yaml")}
    assert generated, "crds/ is empty: run `infleet crds --output-dir crds`"
    assert sorted(shipped) == sorted(generated), f"CRD files differ: {FIX}"
    stale = [name for name in generated if shipped[name] != generated[name]]
    assert stale == [], f"chart CRDs drifted from crds/ ({', '.join(stale)}): {FIX}"


def test_helm_installs_every_crd():
    names = {c["metadata"]["name"] for c in by_kind(render(), "CustomResourceDefinition")}
    assert names == {"inferenceservices.infleet.io", "loraadapters.infleet.io"}
