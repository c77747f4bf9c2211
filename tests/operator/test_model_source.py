"""Model fetch: an init container for hf/s3/https, a PVC mount for pvc://, none for builtin."""

import pytest

from infleet.api import ModelSpec
from infleet.operator.errors import SpecError
from infleet.operator.model_source import resolve_model


def test_hf_with_revision_is_fetched_into_the_cache():
    src = resolve_model(ModelSpec(uri="hf://Qwen/Qwen2.5-7B-Instruct", revision="v1"))
    (init,) = src.init_containers
    assert init["args"] == ["hf://Qwen/Qwen2.5-7B-Instruct:v1", "/mnt/models"]
    assert src.path == "/mnt/models" and src.served_name == "Qwen/Qwen2.5-7B-Instruct"
    assert src.volumes == [{"name": "model-cache", "emptyDir": {"sizeLimit": "100Gi"}}]
    assert src.mounts[0]["readOnly"] is True


def test_s3_prefix_and_https_gguf_file():
    s3 = resolve_model(ModelSpec(uri="s3://bucket/llama/8b", name="llama"))
    assert s3.path == "/mnt/models" and s3.served_name == "llama"
    https = resolve_model(ModelSpec(uri="https://host/files/tiny.Q4_1.gguf"))
    assert https.path == "/mnt/models/tiny.Q4_1.gguf"
    assert https.served_name == "tiny.Q4_1"
    assert https.init_containers[0]["args"] == ["https://host/files/tiny.Q4_1.gguf", "/mnt/models"]


def test_pvc_is_mounted_read_only_without_a_fetch():
    src = resolve_model(ModelSpec(uri="pvc://models/mistral/7b"))
    assert src.init_containers == []
    assert src.volumes == [
        {"name": "model-cache", "persistentVolumeClaim": {"claimName": "models", "readOnly": True}}
    ]
    assert src.path == "/mnt/models/mistral/7b" and src.served_name == "7b"


def test_builtin_needs_nothing():
    src = resolve_model(ModelSpec(uri="builtin:smollm2-135m-instruct"))
    assert src.builtin and src.path == "builtin:smollm2-135m-instruct"
    assert not (src.init_containers or src.volumes or src.mounts)


@pytest.mark.parametrize("uri", ["s3://b/m", "pvc://c/m", "builtin:smollm2-135m-instruct"])
def test_revision_outside_hf_is_an_error(uri):
    with pytest.raises(
        SpecError, match=r"^model.revision: a revision applies to hf:// models only$"
    ):
        resolve_model(ModelSpec(uri=uri, revision="main"))
