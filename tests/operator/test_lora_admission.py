"""Admission of a LoRAAdapter by its service, and its artifact's checks: pure, no cluster."""

from __future__ import annotations

import httpx
import pytest

from infleet.api import InferenceService
from infleet.api.lora_adapter import LoRAAdapter
from infleet.lora.artifact import pack, unpack
from infleet.operator.lora_admission import admit, rank_problem
from infleet.operator.lora_artifact import FetchFailed, check, fetch_files, request_auth, urls
from infleet.operator.lora_status import Observed, adapter_status
from tests.lora.written_adapters import adapter_files, targz
from tests.operator.samples import body as service_body

LORA = {"maxAdapters": 4, "maxRank": 16}


def service(**lora) -> InferenceService:
    return InferenceService.model_validate(
        service_body("base", "platform", engine={"lora": {**LORA, **lora}})
    )


def adapter(name="a", ns="team-a", created="2026-01-01T00:00:00Z", **extra) -> LoRAAdapter:
    spec = {"uri": "https://h/a", "inferenceServiceRef": {"name": "base", "namespace": "platform"}}
    return LoRAAdapter.model_validate(
        {
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": created},
            "spec": {**spec, **extra},
        }
    )


def reason(*args, **kw):
    problem = admit(*args, **kw)
    return problem.reason if problem else None


def test_namespaces_the_service_admits():
    a = adapter()
    assert reason(a, service(), [], None) == "NamespaceNotAllowed"
    assert reason(a, service(allowedNamespaces=["team-a"]), [], None) is None
    by_label = service(namespaceSelector={"matchLabels": {"tier": "gold"}})
    assert reason(a, by_label, [], {"tier": "gold"}) is None
    assert reason(a, by_label, [], {"tier": "free"}) == "NamespaceNotAllowed"
    own = adapter(ns="platform")
    assert reason(own, service(), [], None) is None  # the service's own namespace


def test_the_refusal_message_names_the_service_and_namespace():
    problem = admit(adapter(), service(), [], None)
    assert "platform/base" in problem.message and "team-a" in problem.message


def test_rank_and_missing_or_disabled_service():
    ok = service(allowedNamespaces=["team-a"])
    big = adapter(rank=32)
    assert reason(big, ok, [], None) == "RankTooLarge"
    assert reason(adapter(), None, [], None) == "ServiceNotFound"
    off = InferenceService.model_validate(service_body("base", "platform"))
    assert reason(adapter(), off, [], None) == "LoRADisabled"
    assert rank_problem(8, 16) is None and rank_problem(32, 16).reason == "RankTooLarge"


def test_a_served_name_is_held_by_the_oldest_adapter_across_tenants():
    svc = service(allowedNamespaces=["team-a", "team-b"])
    older = adapter("x", "team-a", "2026-01-01T00:00:00Z")
    younger = adapter("x", "team-b", "2026-01-02T00:00:00Z")
    assert reason(older, svc, [younger], None) is None
    problem = admit(younger, svc, [older], None)
    assert problem.reason == "NameConflict" and "team-a" not in problem.message
    assert reason(younger, svc, [], None) is None  # once the holder is gone


def test_the_base_models_name_is_taken():
    svc = service(allowedNamespaces=["team-a"])
    assert reason(adapter(servedName="smollm2-135m-instruct"), svc, [], None) == "NameConflict"


@pytest.mark.parametrize("kind,expected", [("vllm", None), ("sglang", None),
                                           ("tgi", "UnsupportedByEngine")])  # fmt: skip
def test_engines_without_a_runtime_adapter_api_are_refused_with_a_reason(kind, expected):
    svc = InferenceService.model_validate(
        service_body(
            "base", "platform",
            model={"uri": "hf://org/m"},
            engine={"kind": kind, "lora": {**LORA, "allowedNamespaces": ["team-a"]}},
        )
    )  # fmt: skip
    assert reason(adapter(), svc, [], None) == expected


def test_artifact_urls_and_credentials():
    assert urls("https://h/dir/") == ["https://h/dir/adapter_config.json",
                                      "https://h/dir/adapter_model.safetensors"]  # fmt: skip
    assert urls("https://h/a.tar.gz?sig=1") == ["https://h/a.tar.gz?sig=1"]
    assert (
        urls("hf://org/ad:v2", "https://hub")[0]
        == "https://hub/org/ad/resolve/v2/adapter_config.json"
    )
    assert urls("s3://bkt/team/ad/")[0] == (
        "https://bkt.s3.us-east-1.amazonaws.com/team/ad/adapter_config.json"
    )
    minio = {"AWS_ENDPOINT_URL": "http://minio:9000", "AWS_DEFAULT_REGION": "eu-1"}
    assert urls("s3://bkt/a.tar.gz", secret=minio) == ["http://minio:9000/bkt/a.tar.gz"]
    with pytest.raises(FetchFailed, match="ftp:// is not an adapter source"):
        urls("ftp://host/a")
    auth = request_auth("hf://o/a", {"HF_TOKEN": "t\n"})
    assert auth("https://hub/x") == {"Authorization": "Bearer t"}
    with pytest.raises(FetchFailed, match="no key BEARER_TOKEN"):
        request_auth("https://h/a", {"OTHER": "x"})
    with pytest.raises(FetchFailed, match="no key AWS_SECRET_ACCESS_KEY"):
        request_auth("s3://b/a", {"AWS_ACCESS_KEY_ID": "AK"})


def served(routes: dict[str, tuple[int, bytes]]):
    def handler(request: httpx.Request) -> httpx.Response:
        status, content = routes.get(request.url.path, (404, b""))
        return httpx.Response(status, content=content)

    return lambda: httpx.Client(transport=httpx.MockTransport(handler))


def test_a_tar_gz_and_a_directory_give_the_same_checksum():
    files = adapter_files(rank=4)
    from_tar = fetch_files(
        "https://h/a.tar.gz", None, client_factory=served({"/a.tar.gz": (200, targz(files))})
    )
    routes = {f"/d/{k}": (200, v) for k, v in files.items()}
    from_dir = fetch_files("https://h/d", None, client_factory=served(routes))
    a, b = check(from_tar), check(from_dir)
    assert a.packed.checksum == b.packed.checksum and a.rank == 4
    assert unpack(a.packed.data) == files


@pytest.mark.parametrize(
    "body, reason_",
    [
        (b"\x1f\x8bnot really gzip", "InvalidAdapter"),
        (targz({"adapter_config.json": b"{}"}), "InvalidAdapter"),
    ],
)
def test_corrupt_archives_are_invalid(body, reason_):
    with pytest.raises(FetchFailed) as err:
        fetch_files("https://h/a.tgz", None, client_factory=served({"/a.tgz": (200, body)}))
    assert err.value.problem.reason == reason_


def test_messages_never_carry_url_credentials():
    with pytest.raises(FetchFailed) as err:
        fetch_files("https://u:pw@h/a.tgz?X-Amz-Signature=s", None, client_factory=served({}))
    assert "pw" not in err.value.problem.message and "Signature" not in err.value.problem.message
    assert "https://h/a.tgz" in err.value.problem.message


def test_unreachable_and_bad_files():
    with pytest.raises(FetchFailed) as err:
        fetch_files("https://h/gone.tar.gz", None, client_factory=served({}))
    assert err.value.problem.reason == "ArtifactUnreachable" and "404" in err.value.problem.message
    bad = {**adapter_files(), "adapter_config.json": b'{"peft_type": "IA3"}'}
    with pytest.raises(FetchFailed) as err:
        check(bad)
    assert err.value.problem.reason == "InvalidAdapter" and "peft_type" in err.value.problem.message


def test_pack_is_canonical():
    files = adapter_files(seed=5)
    assert pack(files).digest == pack(dict(reversed(files.items()))).digest


def test_status_ready_only_when_every_ready_replica_serves_it():
    def ready(replicas: int, loaded: int) -> dict:
        o = Observed(3, "platform/base", "a", None, 8, "sha256:x", 10, replicas, loaded)
        return next(c for c in adapter_status({}, o, "t")["conditions"] if c["type"] == "Ready")

    assert ready(2, 2)["status"] == "True"
    assert ready(2, 1)["reason"] == "Loading"
    assert ready(0, 0)["reason"] == "NoReadyReplicas"
