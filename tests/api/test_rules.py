"""Every cross-field rule: the exact message a user sees from the API server (the CRD's
CEL, evaluated with cel-python on the defaulted object) and from the operator / `infleet
render` (the pydantic twin), which must be the same sentence."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from infleet.api import InferenceServiceSpec
from infleet.operator.errors import describe
from tests.api.crd_fixtures import isvc_spec_schema
from tests.api.kube_schema import apply_defaults, cel_errors

MODEL = {"uri": "hf://org/model"}


def api_server_errors(spec: dict) -> list[str]:
    schema = isvc_spec_schema()
    return cel_errors(schema, apply_defaults(schema, spec))


def operator_error(spec: dict) -> str:
    with pytest.raises(ValidationError) as err:
        InferenceServiceSpec.model_validate(spec)
    return describe(err.value)


CASES = [
    (
        {"scaling": {"minReplicas": 5, "maxReplicas": 2}},
        "spec.scaling",
        "scaling.minReplicas must be less than or equal to scaling.maxReplicas",
    ),
    (
        {"scaling": {"minReplicas": 0}},
        "spec.scaling",
        "scaling.scaleToZero.enabled must be true exactly when scaling.minReplicas is 0",
    ),
    (
        {"scaling": {"minReplicas": 1, "scaleToZero": {"enabled": True}}},
        "spec.scaling",
        "scaling.scaleToZero.enabled must be true exactly when scaling.minReplicas is 0",
    ),
    (
        {"capacity": {"spot": {"enabled": True, "preset": "custom"}}},
        "spec.capacity.spot",
        "capacity.spot.preset custom needs capacity.spot.nodeSelector or capacity.spot.affinity "
        "to find spot nodes",
    ),
    (
        {"engine": {"speculative": {"method": "eagle"}}},
        "spec.engine.speculative",
        "engine.speculative.draftModel is required for methods draft_model and eagle",
    ),
    (
        {"engine": {"speculative": {"method": "ngram", "draftModel": "org/small"}}},
        "spec.engine.speculative",
        "engine.speculative.draftModel is only for methods draft_model and eagle",
    ),
    (
        {"engine": {"speculative": {"method": "self_draft"}}},
        "spec.engine.speculative",
        "engine.speculative.selfDraftLayers is required for method self_draft, and only for it",
    ),
    (
        {"engine": {"speculative": {"method": "ngram", "promptLookupMin": 5}}},
        "spec.engine.speculative",
        "engine.speculative.promptLookupMin must not exceed promptLookupMax",
    ),
    (
        {"engine": {"kind": "tgi", "parallelism": {"pipeline": 2}}, "resources": {"gpus": 2}},
        "spec.engine",
        "engine.kind tgi supports tensor parallelism only: set engine.parallelism.pipeline and "
        "engine.parallelism.expert to 1",
    ),
    (
        {"capacity": {"dedicated": {"min": 5}}, "scaling": {"maxReplicas": 4}},
        "spec",
        "capacity.dedicated.min must be less than or equal to scaling.maxReplicas",
    ),
    (
        {"engine": {"parallelism": {"tensor": 4, "pipeline": 2}}, "resources": {"gpus": 4}},
        "spec",
        "engine.parallelism.tensor * engine.parallelism.pipeline must not exceed resources.gpus "
        "(GPUs per replica)",
    ),
    (
        {"engine": {"parallelism": {"tensor": 2}}, "resources": {"gpus": 0}},
        "spec",
        "engine.parallelism.tensor * engine.parallelism.pipeline must not exceed resources.gpus "
        "(GPUs per replica)",
    ),
    (
        {"capacity": {"dedicated": {"min": 0}}},
        "spec",
        "capacity.dedicated.min is 0 and spot is off: enable capacity.spot or raise "
        "capacity.dedicated.min",
    ),
]


@pytest.mark.parametrize(("patch", "path", "message"), CASES)
def test_rule_message_from_api_server_and_operator(patch, path, message):
    spec = {"model": MODEL, **patch}
    assert api_server_errors(spec) == [f'{path}: Invalid value: "object": {message}']
    operator_path = path.removeprefix("spec").lstrip(".")
    expected = f"{operator_path}: {message}" if operator_path else message
    assert operator_error(spec) == expected


VALID = [
    {},
    {"scaling": {"minReplicas": 0, "scaleToZero": {"enabled": True}}},
    {"capacity": {"spot": {"enabled": True, "preset": "custom", "nodeSelector": {"a": "b"}}}},
    {"capacity": {"spot": {"enabled": True, "preset": "custom", "affinity": {}}}},
    {"capacity": {"dedicated": {"min": 0}, "spot": {"enabled": True}}},
    {"engine": {"speculative": {"method": "draft_model", "draftModel": "org/small"}}},
    {"engine": {"speculative": {"method": "ngram", "promptLookupMax": 3, "promptLookupMin": 1}}},
    {"engine": {"speculative": {"method": "self_draft", "selfDraftLayers": 8}}},
    {
        "engine": {"kind": "vllm", "parallelism": {"tensor": 2, "pipeline": 2}},
        "resources": {"gpus": 4},
    },
]


@pytest.mark.parametrize("patch", VALID)
def test_valid_specs_pass_both(patch):
    spec = {"model": MODEL, **patch}
    assert api_server_errors(spec) == []
    InferenceServiceSpec.model_validate(spec)


specs = st.fixed_dictionaries(
    {
        "model": st.just(MODEL),
        "engine": st.fixed_dictionaries(
            {
                "kind": st.sampled_from(["infleet", "vllm", "sglang", "tgi"]),
                "parallelism": st.fixed_dictionaries(
                    {k: st.integers(1, 4) for k in ("tensor", "pipeline", "expert")}
                ),
                "speculative": st.fixed_dictionaries(
                    {
                        "method": st.sampled_from(
                            ["none", "ngram", "eagle", "draft_model", "self_draft"]
                        )
                    },
                    optional={
                        "draftModel": st.just("org/draft"),
                        "selfDraftLayers": st.integers(1, 4),
                        "promptLookupMin": st.integers(1, 6),
                    },
                ),
            }
        ),
        "resources": st.fixed_dictionaries({"gpus": st.integers(0, 8)}),
        "scaling": st.fixed_dictionaries(
            {
                "minReplicas": st.integers(0, 6),
                "maxReplicas": st.integers(1, 6),
                "scaleToZero": st.fixed_dictionaries({"enabled": st.booleans()}),
            }
        ),
        "capacity": st.fixed_dictionaries(
            {
                "dedicated": st.fixed_dictionaries({"min": st.integers(0, 6)}),
                "spot": st.fixed_dictionaries(
                    {
                        "enabled": st.booleans(),
                        "preset": st.sampled_from(["gke", "eks", "karpenter", "aks", "custom"]),
                    },
                    optional={"nodeSelector": st.dictionaries(st.just("k"), st.just("v"))},
                ),
            }
        ),
    }
)


@settings(max_examples=50, deadline=None)
@given(specs)
def test_cel_and_python_twins_agree(spec):
    """Across random specs, the API server and the operator accept exactly the same ones."""
    cel_messages = {e.split('"object": ', 1)[1] for e in api_server_errors(spec)}
    try:
        InferenceServiceSpec.model_validate(spec)
        python_messages = set()
    except ValidationError as err:
        python_messages = {e["msg"].removeprefix("Value error, ") for e in err.errors()}
    # pydantic stops at the first failing rule per object; CEL reports all of them.
    assert bool(cel_messages) == bool(python_messages)
    assert python_messages <= cel_messages
