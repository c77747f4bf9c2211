"""Per-field schema rules (enum, minimum, pattern, required, ...): the CRD schema rejects
the value at the right path, and the operator / `infleet render` names the field."""

import jsonschema
import pytest
from pydantic import ValidationError

from infleet.api import InferenceService
from infleet.operator.errors import describe
from tests.api.crd_fixtures import isvc_root

BASE = {"apiVersion": "infleet.io/v1alpha1", "kind": "InferenceService", "metadata": {"name": "a"}}
URI = {"uri": "hf://org/model"}

CASES = [
    (
        {"model": URI, "engine": {"kind": "foo"}},
        ["spec", "engine", "kind"],
        "spec.engine.kind: Input should be 'infleet', 'vllm', 'sglang' or 'tgi'",
    ),
    (
        {"model": URI, "capacity": {"spot": {"max": -1}}},
        ["spec", "capacity", "spot", "max"],
        "spec.capacity.spot.max: Input should be greater than or equal to 0",
    ),
    (
        {"model": {"uri": "ftp://host/model"}},
        ["spec", "model", "uri"],
        "spec.model.uri: String should match pattern "
        "'^((pvc|hf|s3|https?)://.+|builtin:[a-z0-9][a-z0-9.-]*)$'",
    ),
    ({"model": {}}, ["spec", "model"], "spec.model.uri: Field required"),
    (
        {"model": URI, "slo": {"ttftP95Seconds": 0}},
        ["spec", "slo", "ttftP95Seconds"],
        "spec.slo.ttftP95Seconds: Input should be greater than 0",
    ),
    (
        {"model": URI, "slo": {"requestPreemptionRatio": 1.5}},
        ["spec", "slo", "requestPreemptionRatio"],
        "spec.slo.requestPreemptionRatio: Input should be less than or equal to 1",
    ),
    (
        {"model": URI, "resources": {"memory": "lots"}},
        ["spec", "resources", "memory"],
        "spec.resources.memory: 'lots' is not a Kubernetes quantity (e.g. 500m, 2, 16Gi)",
    ),
    (
        {"model": URI, "engine": {"lora": {"maxRank": 1024}}},
        ["spec", "engine", "lora", "maxRank"],
        "spec.engine.lora.maxRank: Input should be less than or equal to 512",
    ),
    (
        {"model": URI, "scaling": {"maxReplicas": 0}},
        ["spec", "scaling", "maxReplicas"],
        "spec.scaling.maxReplicas: Input should be greater than or equal to 1",
    ),
    (
        {"model": URI, "capacity": {"spot": {"preset": "gcp"}}},
        ["spec", "capacity", "spot", "preset"],
        "spec.capacity.spot.preset: Input should be 'gke', 'eks', 'karpenter', 'aks' or 'custom'",
    ),
    (
        {"model": URI, "replicas": -1},
        ["spec", "replicas"],
        "spec.replicas: Input should be greater than or equal to 0",
    ),
]


@pytest.mark.parametrize(("spec", "path", "message"), CASES)
def test_schema_rejects_and_operator_names_the_field(spec, path, message):
    obj = {**BASE, "spec": spec}
    errors = list(jsonschema.Draft4Validator(isvc_root()).iter_errors(obj))
    assert errors, "the CRD schema let it through"
    assert any(list(e.absolute_path)[: len(path)] == path or list(e.path) == path for e in errors)
    with pytest.raises(ValidationError) as err:
        InferenceService.model_validate(obj)
    assert describe(err.value).startswith(message)


def test_unknown_field_is_named_by_the_operator_and_absent_from_the_schema():
    obj = {**BASE, "spec": {"model": URI, "scaling": {"minReplica": 1}}}
    with pytest.raises(ValidationError) as err:
        InferenceService.model_validate(obj)
    assert describe(err.value) == "spec.scaling.minReplica: Extra inputs are not permitted"
    scaling = isvc_root()["properties"]["spec"]["properties"]["scaling"]["properties"]
    assert "minReplica" not in scaling  # the API server prunes it (kubectl --validate warns)


def test_camel_case_on_the_wire_snake_case_in_python():
    obj = {**BASE, "spec": {"model": URI, "engine": {"kvCache": {"dtype": "fp8", "dram": "32Gi"}}}}
    isvc = InferenceService.model_validate(obj)
    assert isvc.spec.engine.kv_cache.dram == "32Gi"
    wire = isvc.to_wire()["spec"]
    assert wire["engine"]["kvCache"] == {"dtype": "fp8", "dram": "32Gi"}
    assert wire["scaling"]["scaleDownStabilizationWindowSeconds"] == 300
    assert InferenceService.model_validate(isvc.to_wire()) == isvc
