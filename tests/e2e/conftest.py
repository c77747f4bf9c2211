"""The cluster for tests/e2e: `infleet up` (no sample) by default, or any cluster given
by INFLEET_E2E_KUBECONFIG with the CRDs and the operator installed (e.g. the Helm chart;
INFLEET_E2E_OPERATOR=namespace/deployment names its Deployment, default
infleet-system/infleet-operator)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.cluster import Cluster
from tests.localplane.procs import processes_with


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.slow)


def _operator() -> tuple[str, str]:
    ns, _, name = os.environ.get(
        "INFLEET_E2E_OPERATOR", "infleet-system/infleet-operator"
    ).partition("/")
    return ns, name


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("e2e")
    given = os.environ.get("INFLEET_E2E_KUBECONFIG")
    if given:
        c = Cluster(Path(given), tmp / "cache", _operator())
        if not c.exists("crd", "inferenceservices.infleet.io"):
            pytest.skip(
                "INFLEET_E2E_KUBECONFIG: the InferenceService CRD is not installed "
                "(install charts/infleet-operator first)"
            )
        yield c
        return
    kubeconfig = tmp / "kubeconfig"
    log = open(tmp / "up.log", "w")  # noqa: SIM115
    octet = random.randrange(16, 120) * 2  # loopback networks no other plane here uses
    up = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "infleet",
            "up",
            "--no-sample",
            "--kubeconfig",
            str(kubeconfig),
            f"--pod-network=127.{octet}.0.0/16",
            f"--service-network=127.{octet + 1}.0.0/16",
            "--state-dir",
            str(tmp / "state"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    c = Cluster(kubeconfig, tmp / "cache", _operator())
    try:
        c.wait_for(
            lambda: (
                "Ctrl-C stops everything" in (tmp / "up.log").read_text() or up.poll() is not None
            ),
            120,
            "infleet up",
        )
        assert up.poll() is None, (tmp / "up.log").read_text()
        c.kubectl(
            "rollout",
            "status",
            "deployment/" + c.operator[1],
            "-n",
            c.operator[0],
            "--timeout=120s",
        )
        yield c
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(90)
        except subprocess.TimeoutExpired:
            up.kill()
            raise
        finally:
            log.close()
        assert up.returncode == 0, (tmp / "up.log").read_text()[-3000:]
        assert processes_with("", tmp / "state") == [], "pod processes outlived infleet up"


@pytest.fixture(scope="module")
def namespace(cluster: Cluster) -> Iterator[str]:
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=true", "--timeout=180s", check=False)
