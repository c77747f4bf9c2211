"""spec.engine.kvCache.dram/nvme rendered for infleet, vLLM and SGLang from the one engine
table: memory raised by the DRAM tier, the NVMe volume (emptyDir with a sizeLimit above the
tier by default, a generic ephemeral volume, an allowed hostPath), each engine's flags and
environment; every child valid against the Kubernetes schemas (strict)."""

import kubernetes_validate
import pytest
import yaml

from infleet.operator.errors import SpecError
from infleet.operator.kv_tiers import NVME_PATH, NVME_VOLUME
from infleet.operator.render import RenderOptions, render_children
from tests.operator.samples import engine_isvc
from tests.operator.test_render import SUPPORTED

TIERS = {"dram": "32Gi", "nvme": "200Gi"}
VOLUMES = {
    "emptyDir": None,
    "ephemeral": {"storageClassName": "local-nvme"},
    "hostPath": {"hostPath": {"path": "/mnt/nvme/infleet-kv"}},
}


def render(kind, volume=None, minor=None, **kv):
    kv_cache = {**TIERS, **kv}
    if volume is not None:
        kv_cache["nvmeVolume"] = volume
    return render_children(
        engine_isvc(kind, "mixed", resources={"memory": "64Gi"}, engine={"kvCache": kv_cache}),
        RenderOptions(kube_version=minor),
    )


def pod_of(children):
    deployment = next(c for c in children if c["kind"] == "Deployment")
    return deployment["spec"]["template"]["spec"]


@pytest.mark.parametrize("kind", ["infleet", "vllm", "sglang"])
@pytest.mark.parametrize("volume", list(VOLUMES))
def test_tiers_render_valid_children_for_each_engine_and_volume(kind, volume):
    for minor in (SUPPORTED[0], SUPPORTED[-1]):
        for child in render(kind, VOLUMES[volume], minor):
            kubernetes_validate.validate(child, f"1.{minor[1]}.0", strict=True)
    children = render(kind, VOLUMES[volume])
    pod = pod_of(children)
    engine = pod["containers"][0]
    # 64Gi + the 32Gi DRAM tier, request and limit alike.
    assert engine["resources"]["requests"]["memory"] == f"{96 * 1024}Mi"
    assert engine["resources"]["limits"]["memory"] == f"{96 * 1024}Mi"
    assert {"name": NVME_VOLUME, "mountPath": NVME_PATH} in engine["volumeMounts"]
    (vol,) = [v for v in pod["volumes"] if v["name"] == NVME_VOLUME]
    if volume == "emptyDir":
        # Over its sizeLimit the kubelet evicts the pod: the limit is above the tier.
        assert vol["emptyDir"]["sizeLimit"] == f"{210 * 1024}Mi"
    elif volume == "ephemeral":
        claim = vol["ephemeral"]["volumeClaimTemplate"]["spec"]
        assert claim["storageClassName"] == "local-nvme"
        assert claim["resources"]["requests"]["storage"] == f"{210 * 1024}Mi"
    else:
        assert vol["hostPath"] == {"path": "/mnt/nvme/infleet-kv", "type": "DirectoryOrCreate"}


def _flags(children):
    return pod_of(children)["containers"][0]["args"]


def _env(children):
    return {e["name"]: e.get("value") for e in pod_of(children)["containers"][0]["env"]}


def test_infleet_reads_its_tier_flags_from_its_config_file():
    children = render("infleet")
    config = next(c for c in children if c["kind"] == "ConfigMap")
    settings = yaml.safe_load(next(iter(config["data"].values())))
    assert settings["kv-dram-size"] == 32 * 2**30
    assert settings["kv-nvme-size"] == 200 * 2**30
    assert f"--kv-nvme-path={NVME_PATH}" in _flags(children)


def test_vllm_offloads_to_cpu_natively_and_to_disk_through_lmcache():
    dram_only = render("vllm", nvme=None)
    assert {"--kv-offloading-backend=native", "--kv-offloading-size=32"} <= set(_flags(dram_only))
    assert all(v["name"] != NVME_VOLUME for v in pod_of(dram_only)["volumes"])
    both = render("vllm")
    assert {"--kv-offloading-backend=lmcache", "--kv-offloading-size=32"} <= set(_flags(both))
    env = _env(both)
    assert env["LMCACHE_LOCAL_DISK"] == f"file://{NVME_PATH}/"
    assert env["LMCACHE_MAX_LOCAL_DISK_SIZE"] == "200"


def test_sglang_hierarchical_cache_with_its_file_storage():
    children = render("sglang")
    flags = set(_flags(children))
    assert {
        "--enable-hierarchical-cache",
        "--hicache-size=32",
        "--hicache-storage-backend=file",
        "--hicache-write-policy=write_through",
    } <= flags
    assert _env(children)["SGLANG_HICACHE_FILE_BACKEND_STORAGE_DIR"] == NVME_PATH


def test_no_tiers_no_volume_and_memory_unchanged():
    children = render_children(engine_isvc("infleet", "mixed", resources={"memory": "64Gi"}))
    pod = pod_of(children)
    assert all(v["name"] != NVME_VOLUME for v in pod["volumes"])
    assert pod["containers"][0]["resources"]["limits"]["memory"] == "64Gi"


def test_tgi_has_no_tiers():
    with pytest.raises(SpecError, match=r"engine\.kvCache\.dram"):
        render("tgi", nvme=None)


def test_one_volume_option_at_a_time():
    with pytest.raises(ValueError, match="at most one of storageClassName and hostPath"):
        render("infleet", {**VOLUMES["ephemeral"], **VOLUMES["hostPath"]})
