"""Pure pieces of the API server: patches, selectors, field sets, schemas, CEL."""

import pytest

from infleet.localplane.errors import ApiError
from infleet.localplane.fieldmanager import ManagedFields, decode, encode, fields_of
from infleet.localplane.patches import json_patch, merge_patch, strategic_merge
from infleet.localplane.schema import apply_defaults, prune, validate
from infleet.localplane.selectors import matches, parse_field_selector, parse_label_selector
from infleet.localplane.tables import jsonpath


def test_strategic_merge_directives() -> None:
    live = {
        "spec": {
            "containers": [
                {"name": "a", "image": "1", "env": [{"name": "X", "value": "1"}]},
                {"name": "b", "image": "2"},
            ],
            "volumes": [{"name": "v", "emptyDir": {}}],
        },
        "metadata": {"finalizers": ["f1"], "labels": {"k": "v", "drop": "me"}},
    }
    patch = {
        "spec": {
            "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
            "containers": [{"name": "a", "image": "3"}, {"name": "b", "$patch": "delete"}],
            "volumes": [{"$patch": "replace"}, {"name": "w", "emptyDir": {}}],
        },
        "metadata": {
            "finalizers": ["f2"],
            "labels": {"drop": None},
            "$deleteFromPrimitiveList/finalizers": ["f1"],
        },
    }
    out = strategic_merge(live, patch)
    assert out["spec"]["containers"] == [
        {"name": "a", "image": "3", "env": [{"name": "X", "value": "1"}]}
    ]
    assert out["spec"]["volumes"] == [{"name": "w", "emptyDir": {}}]
    assert out["metadata"] == {"finalizers": ["f2"], "labels": {"k": "v"}}
    assert strategic_merge(
        {"spec": {"a": 1, "b": 2}}, {"spec": {"$retainKeys": ["b"], "b": 3}}
    ) == {"spec": {"b": 3}}


def test_merge_and_json_patch() -> None:
    assert merge_patch({"a": {"b": 1, "c": 2}}, {"a": {"b": None, "d": [1]}}) == {
        "a": {"c": 2, "d": [1]}
    }
    doc = {"a": [1, 2], "b": {"c": 1}}
    out = json_patch(
        doc,
        [
            {"op": "add", "path": "/a/-", "value": 3},
            {"op": "move", "from": "/b/c", "path": "/d"},
            {"op": "test", "path": "/d", "value": 1},
        ],
    )
    assert out == {"a": [1, 2, 3], "b": {}, "d": 1} and doc == {"a": [1, 2], "b": {"c": 1}}
    with pytest.raises(ApiError) as err:
        json_patch(doc, [{"op": "replace", "path": "/nope", "value": 1}])
    assert err.value.code == 422


def test_label_and_field_selectors() -> None:
    reqs = parse_label_selector("app in (a, b),!gone,tier!=x,env")
    assert matches(reqs, {"app": "a", "env": "prod"})
    assert not matches(reqs, {"app": "a", "env": "prod", "gone": "1"})
    assert not matches(reqs, {"app": "c", "env": "prod"})
    pred = parse_field_selector("spec.nodeName=n1,status.phase!=Failed", "pods")
    assert pred({"spec": {"nodeName": "n1"}, "status": {"phase": "Running"}})
    with pytest.raises(ApiError, match=r"field label not supported: spec\.image"):
        parse_field_selector("spec.image=x", "pods")


def test_field_sets_round_trip_and_apply_ownership() -> None:
    obj = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "labels": {"a": "1"}},
        "spec": {"containers": [{"name": "c", "image": "i"}]},
    }
    fields = fields_of(obj)
    assert ("f:spec", "f:containers", 'k:{"name":"c"}', "f:image") in fields
    assert decode(encode(fields)) == fields
    mf = ManagedFields([])
    merged = mf.apply(obj, obj, "alice", "v1", None, force=False)
    with pytest.raises(ApiError) as err:
        ManagedFields(mf.dump()).apply(
            merged,
            {**obj, "metadata": {"name": "p", "labels": {"a": "2"}}},
            "bob",
            "v1",
            None,
            force=False,
        )
    assert err.value.code == 409 and ".metadata.labels.a" in err.value.message


SCHEMA = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["size"],
            "x-kubernetes-validations": [
                {"rule": "self.min <= self.max", "message": "min > max", "fieldPath": ".min"},
                {
                    "rule": "self.size == oldSelf.size",
                    "message": "size is immutable",
                    "reason": "FieldValueForbidden",
                },
            ],
            "properties": {
                "size": {"type": "string"},
                "min": {"type": "integer", "default": 0},
                "max": {"type": "integer", "default": 5},
                "tags": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        }
    },
}


def test_schema_defaults_pruning_and_rules() -> None:
    obj = {
        "apiVersion": "x/v1",
        "kind": "X",
        "metadata": {"name": "n", "extra": 1},
        "spec": {"size": "s", "bogus": 1, "tags": {"a": "b"}},
    }
    assert prune(obj, SCHEMA) == ["spec.bogus"]
    apply_defaults(obj, SCHEMA)
    assert obj["spec"] == {"size": "s", "tags": {"a": "b"}, "min": 0, "max": 5}
    assert obj["metadata"] == {"name": "n", "extra": 1}  # root metadata is the apiserver's
    assert validate(obj, SCHEMA) == []
    bad = {"spec": {"size": "s", "min": 9, "max": 1}}
    [cause] = validate(bad, SCHEMA)
    assert cause == {
        "reason": "FieldValueInvalid",
        "field": "spec.min",
        "message": 'Invalid value: "object": min > max',
    }
    [changed] = validate(
        {"spec": {"size": "t", "min": 0, "max": 1}},
        SCHEMA,
        {"spec": {"size": "s", "min": 0, "max": 1}},
        has_old=True,
    )
    assert changed["message"] == "Forbidden: size is immutable"


def test_an_update_does_not_judge_unchanged_values_again_except_by_transition_rules() -> None:
    stored = {"spec": {"size": "s", "min": 9, "max": 1}, "status": {"phase": "A"}}
    status_write = {"spec": {"size": "s", "min": 9, "max": 1}, "status": {"phase": "B"}}
    assert validate(status_write, SCHEMA, stored, has_old=True) == []  # ratcheted
    [cause] = validate({**status_write, "spec": {"size": "s", "min": 8, "max": 1}}, SCHEMA,
                       stored, has_old=True)  # fmt: skip
    assert cause["message"] == 'Invalid value: "object": min > max'
    flipping = {
        "type": "object",
        "properties": {"n": {"type": "integer", "x-kubernetes-validations": [
            {"rule": "self != oldSelf", "message": "must change"}]}},
    }  # fmt: skip
    [same] = validate({"n": 1}, flipping, {"n": 1}, has_old=True)
    assert (same["field"], same["message"]) == ("n", 'Invalid value: "integer": must change')


def test_printer_column_jsonpath() -> None:
    obj = {
        "status": {
            "conditions": [{"type": "A", "status": "False"}, {"type": "Ready", "status": "True"}]
        },
        "l": [{"x": 1}, {"x": 2}],
    }
    assert jsonpath(obj, '.status.conditions[?(@.type=="Ready")].status') == ["True"]
    assert jsonpath(obj, ".l[*].x") == [1, 2] and jsonpath(obj, ".l[1].x") == [2]
    assert jsonpath(obj, ".missing.field") == []
