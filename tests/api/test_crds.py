"""The committed CRDs are exactly what `infleet crds` generates, and they are valid CRDs."""

import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from infleet.api.crds import all_crds, file_name, to_yaml
from infleet.api.crds import main as crds_main
from tests.api.crd_fixtures import isvc_root, lora_root
from tests.conftest import REPO

CRD_DIR = REPO / "crds"
FIX = "run `infleet crds --output-dir crds` and commit the result"


@pytest.mark.parametrize("crd", all_crds(), ids=lambda c: c["metadata"]["name"])
def test_committed_crd_matches_the_models(crd):
    path = CRD_DIR / file_name(crd)
    assert path.exists(), f"{path} is missing: {FIX}"
    assert path.read_text() == to_yaml(crd), f"{path} drifted from api/: {FIX}"


def test_no_stray_crd_files():
    expected = {file_name(c) for c in all_crds()}
    assert {p.name for p in CRD_DIR.glob("*.yaml")} == expected, FIX


def test_cli_prints_and_writes_the_same_crds(tmp_path: Path):
    printed = subprocess.run(
        [sys.executable, "-m", "infleet", "crds"], capture_output=True, text=True, check=True
    ).stdout
    docs = list(yaml.safe_load_all(printed))
    assert [d["metadata"]["name"] for d in docs] == [c["metadata"]["name"] for c in all_crds()]
    assert crds_main(["--output-dir", str(tmp_path)]) == 0
    for crd in all_crds():
        assert (tmp_path / file_name(crd)).read_text() == to_yaml(crd)


@pytest.mark.parametrize("crd", all_crds(), ids=lambda c: c["metadata"]["name"])
def test_crd_validates_against_the_apiextensions_schema(crd):
    kubernetes_validate.validate(crd, "1.32", strict=True)


def _walk(node, path="root"):
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from _walk(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}{{}}")


@pytest.mark.parametrize("root", [isvc_root(), lora_root()], ids=["isvc", "lora"])
def test_schema_is_structural(root):
    for path, node in _walk(root):
        assert "$ref" not in node, path
        assert "title" not in node, path
        if "anyOf" in node:  # only the int-or-string form
            assert node.get("x-kubernetes-int-or-string") is True, path
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], path
        elif path != "root.metadata":
            assert node.get("type") or node.get("x-kubernetes-preserve-unknown-fields"), path
        assert not ("properties" in node and "additionalProperties" in node), path
        assert node.get("additionalProperties") is not False, path
        described = path.startswith("root.spec") and path.count(".") > 1
        if described and node.get("type") != "object" and not path.endswith(("[]", "{}")):
            assert node.get("description"), f"{path} has no description for kubectl explain"


def test_preserve_unknown_fields_only_where_needed():
    paths = {p for p, n in _walk(isvc_root()) if n.get("x-kubernetes-preserve-unknown-fields")}
    # Core/v1 objects we pass through as written (the API server validates them in the pods).
    template = {"affinity", "containers[]", "initContainers[]", "securityContext", "volumes[]"}
    assert paths == {
        "root.spec.capacity.spot.affinity",
        "root.spec.engine.env[].valueFrom",
        *(f"root.spec.template.spec.{name}" for name in template),
    }


def test_quantities_are_int_or_string():
    resources = isvc_root()["properties"]["spec"]["properties"]["resources"]["properties"]
    for name in ("cpu", "memory"):
        assert resources[name]["x-kubernetes-int-or-string"] is True
        assert "pattern" in resources[name]


def test_status_schema_has_no_defaults():
    assert not [p for p, n in _walk(isvc_root()["properties"]["status"]) if "default" in n]


def test_names_subresources_and_columns():
    crd = all_crds()[0]
    names = crd["spec"]["names"]
    assert crd["spec"]["group"] == "infleet.io" and names["plural"] == "inferenceservices"
    assert "isvc" not in names["shortNames"] and "infsvc" in names["shortNames"]
    assert names["categories"] == ["infleet"]
    version = crd["spec"]["versions"][0]
    assert version["name"] == "v1alpha1"
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    columns = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert columns == ["Ready", "Engine", "Model", "Replicas", "Age"]


def test_conditions_are_a_map_list_keyed_by_type():
    conditions = isvc_root()["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
