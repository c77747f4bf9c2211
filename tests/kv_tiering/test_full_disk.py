"""A full disk under the NVMe tier: a real tmpfs of 160 KiB (20 block files) mounted in a
private user and mount namespace, under a tier configured for 1,024 files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO


def _namespaces_work() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True
    )
    return probe.returncode == 0


@pytest.mark.skipif(not _namespaces_work(), reason="needs unshare with user namespaces")
def test_a_full_disk_degrades_to_fewer_hits_never_to_errors(tmp_path):
    mount = tmp_path / "small-disk"
    mount.mkdir()
    script = (
        f"mount -t tmpfs -o size=160k tmpfs {mount} && "
        f"exec {sys.executable} -m tests.kv_tiering.full_disk_process {mount}"
    )
    out = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert "No space left on device" in out.stderr  # the disk really filled (logged)
    assert report["dropped"] > 0
    # The tier shrank to what the disk holds and kept serving: old files were evicted for
    # new ones, so the newest block is on NVMe and every indexed block restored exactly.
    assert report["capacity_bytes"] < report["configured_bytes"]
    assert 0 < report["on_nvme"] == report["files"] <= 20
    assert report["most_recent_on_nvme"]
    assert report["written_bytes"] > report["files"] * 8192  # it kept writing after the fill
