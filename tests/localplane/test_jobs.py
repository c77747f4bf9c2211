"""Jobs and claims on the local fleet: a Job runs one pod at a time to completion, counts
failures against backoffLimit and ends Failed with the real controller's reason; a
PersistentVolumeClaim is a local directory that outlives pods. And the pvc:// upload Job
as the operator renders it, run for real: the adapter on a claim reaches the store."""

from __future__ import annotations

import pytest

from infleet.localplane.container import claim_dir
from infleet.lora.artifact import pack
from infleet.operator.lora_pvc_job import parse_pvc_uri, render_upload_job, render_upload_secret
from infleet.operator.lora_store import AdapterStore
from tests.localplane.harness import RunningPlane
from tests.localplane.manifests import namespace
from tests.lora.written_adapters import Base, adapter_files, write_dir

NS = "jobs"


@pytest.fixture(scope="module", autouse=True)
def ns(plane: RunningPlane) -> None:
    plane.apply(
        [
            namespace(NS),
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": "data", "namespace": NS},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            },
        ]
    )


def job(name: str, script: str, backoff: int = 1, volumes: list | None = None) -> dict:
    container = {"name": "main", "image": "python", "command": ["python", "-c", script]}
    spec: dict = {"restartPolicy": "Never", "containers": [container]}
    if volumes:
        spec["volumes"] = volumes
        container["volumeMounts"] = [{"name": "data", "mountPath": "/data", "readOnly": True}]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"backoffLimit": backoff, "template": {"spec": spec}},
    }


def finished(plane: RunningPlane, name: str) -> dict:
    def done():
        got = plane.get("job", name, "-n", NS)
        conds = (got.get("status") or {}).get("conditions") or []
        return got if any(c["status"] == "True" for c in conds) else None

    return plane.wait_for(done, timeout=45, what=f"job {name} finished")


def test_a_job_reads_its_claim_and_completes(plane: RunningPlane) -> None:
    data = claim_dir(plane.plane.workdir / "claims", NS, "data")
    data.mkdir(parents=True, exist_ok=True)
    (data / "greeting").write_text("hello")
    script = "import sys; sys.exit(open('/data/greeting').read() != 'hello')"
    claim = [{"name": "data", "persistentVolumeClaim": {"claimName": "data", "readOnly": True}}]
    plane.apply(job("reader", script, volumes=claim))
    got = finished(plane, "reader")
    (cond,) = got["status"]["conditions"]
    assert cond["type"] == "Complete" and got["status"]["succeeded"] == 1
    assert "completionTime" in got["status"]
    pods = plane.get("pods", "-n", NS, "-l", "job-name=reader")["items"]
    assert [p["status"]["phase"] for p in pods] == ["Succeeded"]


def test_failures_count_against_the_backoff_limit(plane: RunningPlane) -> None:
    plane.apply(job("crasher", "import sys; sys.exit('broken on purpose')", backoff=1))
    got = finished(plane, "crasher")
    (cond,) = got["status"]["conditions"]
    assert (cond["type"], cond["reason"]) == ("Failed", "BackoffLimitExceeded")
    assert got["status"]["failed"] == 2  # the first try and one retry
    pods = plane.get("pods", "-n", NS, "-l", "job-name=crasher")["items"]
    assert sorted(p["status"]["phase"] for p in pods) == ["Failed", "Failed"]


def test_a_missing_claim_holds_the_pod_with_a_mount_event(plane: RunningPlane) -> None:
    claim = [{"name": "data", "persistentVolumeClaim": {"claimName": "nowhere"}}]
    plane.apply(job("unmounted", "pass", volumes=claim))

    def event():
        items = plane.get("events", "-n", NS)["items"]
        return [e for e in items if e["reason"] == "FailedMount" and "nowhere" in e["message"]]

    plane.wait_for(event, timeout=20, what="a FailedMount event naming the claim")
    plane.kubectl("delete", "job", "unmounted", "-n", NS, "--wait=false")


def test_the_operators_upload_job_delivers_the_adapter_on_a_claim(plane, tmp_path) -> None:
    store = AdapterStore(tmp_path / "store", "")
    server = store.serve("127.0.0.1", 0)
    store.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        files = adapter_files(Base(hidden=64, layers=2, q=64, kv=32), seed=3)
        write_dir(claim_dir(plane.plane.workdir / "claims", NS, "data") / "bots" / "support", files)
        adapter = {
            "apiVersion": "infleet.io/v1alpha1",
            "kind": "LoRAAdapter",
            "metadata": {"name": "support", "namespace": NS, "uid": "x", "generation": 1},
        }
        token = store.uploads.issue((NS, "support"), 1)
        source = parse_pvc_uri("pvc://data/bots/support")
        upload = render_upload_job(adapter, source, "infleet-operator:test", store.base_url)
        # The owner is not a real object here: the objects stand alone.
        objs = [render_upload_secret(adapter, token), upload]
        for obj in objs:
            del obj["metadata"]["ownerReferences"]
        plane.apply(objs)
        got = finished(plane, upload["metadata"]["name"])
        assert got["status"]["conditions"][0]["type"] == "Complete", got["status"]
        digest = pack(files).digest
        assert store.has(digest)
        received = store.uploads.received((NS, "support"), 1)
        assert received is not None and received.fetched.packed.digest == digest
    finally:
        server.shutdown()
