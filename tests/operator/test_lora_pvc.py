"""The pvc:// upload as the controller drives it (operator/lora_pvc.py), against the local
fleet running the Job for real: Fetching until the store has it, then the checked
artifact, with the Job and token Secret deleted; a restarted operator (a new store, no
live token) replaces the Job it finds instead of waiting on a token it cannot check."""

from __future__ import annotations

import time

import pytest

from infleet.localplane.container import claim_dir
from infleet.lora.artifact import pack
from infleet.operator.kube import Kube, load_config
from infleet.operator.lora_artifact import Fetched, FetchFailed
from infleet.operator.lora_pvc import PvcUploads, Uploading
from infleet.operator.lora_pvc_kube import PvcKube
from infleet.operator.lora_store import AdapterStore
from tests.charts.paths import CHART
from tests.localplane.harness import RunningPlane, fast_config
from tests.lora.written_adapters import Base, adapter_files, write_dir

NS = "tenant"
SMALL = Base(hidden=64, layers=2, q=64, kv=32)


@pytest.fixture(scope="module")
def plane():
    running = RunningPlane(fast_config())
    running.kubectl("apply", "-f", str(CHART / "crds"))
    running.kubectl("create", "namespace", NS)
    running.apply({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "claim", "namespace": NS},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    })  # fmt: skip
    yield running
    running.stop()


def store(tmp_path, name: str) -> tuple[AdapterStore, object]:
    s = AdapterStore(tmp_path / name, "")
    server = s.serve("127.0.0.1", 0)
    s.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    return s, server


def adapter(plane: RunningPlane, name: str, uri: str) -> dict:
    plane.apply({
        "apiVersion": "infleet.io/v1alpha1", "kind": "LoRAAdapter",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"inferenceService": "base", "uri": uri},
    })  # fmt: skip
    return plane.get("loraadapter", name, "-n", NS)


def drive(uploads: PvcUploads, body: dict, timeout: float = 45) -> Fetched:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = uploads.artifact((NS, body["metadata"]["name"]), body)
        if not isinstance(got, Uploading):
            return got
        time.sleep(0.3)
    raise AssertionError(f"still uploading: {got.message}")


def upload_objects(plane: RunningPlane, name: str) -> list:
    return plane.get("jobs,secrets", "-n", NS, "-l", f"infleet.io/lora-upload={name}")["items"]


def test_an_upload_after_a_restart_replaces_the_orphaned_job(plane, tmp_path):
    files = adapter_files(SMALL, seed=4)
    write_dir(claim_dir(plane.plane.workdir / "claims", NS, "claim") / "bot", files)
    body = adapter(plane, "bot", "pvc://claim/bot")
    kube = Kube(load_config(str(plane.kubeconfig)))
    first, first_server = store(tmp_path, "first")
    second, second_server = store(tmp_path, "second")
    try:
        started = PvcUploads(PvcKube(kube), first, "img").artifact((NS, "bot"), body)
        assert isinstance(started, Uploading) and "Job tenant/bot-lora-upload-" in started.message
        assert len(upload_objects(plane, "bot")) == 2  # the Job and its token Secret
        # The operator restarts before the Job is done: the new one holds no token.
        fetched = drive(PvcUploads(PvcKube(kube), second, "img"), body)
        assert fetched.packed.checksum == pack(files).checksum and fetched.rank == 8
        assert second.has(fetched.packed.digest)
        plane.wait_for(lambda: not upload_objects(plane, "bot"), what="Job and Secret deleted")
    finally:
        first_server.shutdown()
        second_server.shutdown()


def test_a_missing_claim_and_a_failed_job_are_artifact_unreachable(plane, tmp_path):
    kube = Kube(load_config(str(plane.kubeconfig)))
    s, server = store(tmp_path, "s")
    try:
        uploads = PvcUploads(PvcKube(kube), s, "img")
        with pytest.raises(FetchFailed, match=f"PersistentVolumeClaim {NS}/gone not found"):
            uploads.artifact((NS, "x"), adapter(plane, "x", "pvc://gone/x"))
        body = adapter(plane, "y", "pvc://claim/not-there")
        with pytest.raises(FetchFailed) as err:
            drive(uploads, body)
        assert err.value.problem.reason == "ArtifactUnreachable"
        assert "BackoffLimitExceeded" in str(err.value) and "does not exist on the claim" in str(
            err.value
        )
        # Remembered: no new Job until the retry delay passes.
        with pytest.raises(FetchFailed, match="BackoffLimitExceeded"):
            uploads.artifact((NS, "y"), body)
        assert upload_objects(plane, "y") == []
    finally:
        server.shutdown()
