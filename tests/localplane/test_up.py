"""`infleet up` as a user runs it: kubeconfig written, nodes served, pods run, and
Ctrl-C leaves no process behind."""

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from tests.localplane.harness import RunningPlane
from tests.localplane.pods import pod
from tests.localplane.procs import processes_with


def test_bad_arguments_name_the_flag(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "infleet", "up", "--node-pool", str(tmp_path / "nope.yaml")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and "--node-pool: no such file" in out.stderr


@pytest.mark.slow
def test_up_serves_then_ctrl_c_stops_everything(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kc"
    pool, state = tmp_path / "pool.yaml", tmp_path / "state"
    pool.write_text(yaml.safe_dump({"groups": [{"name": "gpu", "count": 2, "gpus": 2}]}))
    up = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "infleet",
            "up",
            "--no-sample",
            "--no-operator",
            "--kubeconfig",
            str(kubeconfig),
            "--node-pool",
            str(pool),
            "--state-dir",
            str(state),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "KUBECACHEDIR": str(tmp_path / "cache")}
    marker = f"marker-{uuid.uuid4().hex}"
    try:
        assert up.stdout is not None
        banner = ""
        for line in up.stdout:
            banner += line
            if "Ctrl-C stops everything" in line:
                break
        assert f"kubeconfig: {kubeconfig}" in banner
        token = yaml.safe_load(kubeconfig.read_text())["users"][0]["user"]["token"]
        assert token not in banner  # the kubeconfig's path is printed, never its secret
        nodes = subprocess.run(
            ["kubectl", "get", "nodes", "-o", "name"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert nodes == ["node/gpu-0", "node/gpu-1"]
        sleeper = pod(
            "sleeper",
            "default",
            {
                "name": "c",
                "image": "x",
                "command": ["python", "-c", "import time; time.sleep(600)", marker],
            },
        )
        subprocess.run(
            ["kubectl", "apply", "-f", "-"],
            input=yaml.safe_dump(sleeper),
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        deadline = time.monotonic() + 30
        while not processes_with(marker, state) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert processes_with(marker, state), "the pod's process never started"
    finally:
        up.send_signal(signal.SIGINT)
        rest = up.communicate(timeout=60)[0]
    assert up.returncode == 0, rest
    assert "stopping: operator, pods, control plane" in rest
    assert processes_with(marker, state) == []  # nothing by command line, nothing by cwd


def test_the_sample_is_a_valid_inference_service(plane: RunningPlane) -> None:
    from infleet.api.crds import all_crds
    from infleet.localplane.up import SAMPLE

    plane.apply(list(all_crds()))
    plane.kubectl("wait", "--for=condition=Established", "crd/inferenceservices.infleet.io")
    out = plane.kubectl("apply", "--dry-run=server", "-f", str(SAMPLE))
    assert out.stdout.strip() == "inferenceservice.infleet.io/chat created (server dry run)"
    assert plane.kubectl("get", "infsvc", "chat", check=False).returncode == 1
