"""A real kopf operator (`kopf run`) against the local plane: discovery, watching,
progress annotations, status patches via the subresource, finalizers, events."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.localplane.harness import RunningPlane
from tests.localplane.manifests import WIDGET_CRD, namespace, widget

OPERATOR = Path(__file__).with_name("kopf_widgets.py")


@pytest.mark.slow
def test_kopf_operator_lifecycle(plane: RunningPlane) -> None:
    plane.apply(WIDGET_CRD)
    plane.apply(namespace("kopf"))
    log = open(plane.dir / "kopf.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "kopf", "run", "--standalone", "--all-namespaces", str(OPERATOR)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**plane.env, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,
    )
    try:
        plane.apply(widget("k1", "kopf", replicas=2))
        child = plane.wait_for(
            lambda: (
                plane.kubectl(
                    "get", "cm", "k1-child", "-n", "kopf", "-o", "json", check=False
                ).returncode
                == 0
            ),
            timeout=30,
            what="kopf child",
        )
        assert child
        cm = plane.get("configmap", "k1-child", "-n", "kopf")
        assert cm["data"] == {"size": "small"}
        assert cm["metadata"]["ownerReferences"][0]["kind"] == "Widget"
        obj = plane.wait_for(
            lambda: (
                (o := plane.get("widget", "k1", "-n", "kopf")).get("status", {}).get("replicas")
                == 2
                and o
            ),
            what="status patched",
        )
        assert "kopf.zalando.org/KopfFinalizerMarker" in obj["metadata"]["finalizers"]
        # The handler's result went to status.create_fn, which the schema does not declare:
        # pruned, as a real apiserver prunes it; kopf's progress lives in annotations.
        assert "create_fn" not in obj["status"]
        assert any(k.startswith("kopf.zalando.org/") for k in obj["metadata"]["annotations"])
        plane.kubectl("scale", "widget/k1", "-n", "kopf", "--replicas=5")
        plane.wait_for(
            lambda: plane.get("widget", "k1", "-n", "kopf")["status"]["replicas"] == 5,
            what="update handler",
        )

        def posted() -> bool:
            events = plane.get("events", "-n", "kopf", "--field-selector", "involvedObject.name=k1")
            return any(
                e["reason"] == "ChildCreated" and e["message"] == "created ConfigMap k1-child"
                for e in events["items"]
            )

        plane.wait_for(posted, what="kopf's event, posted in the background")
        plane.kubectl("delete", "widget/k1", "-n", "kopf", "--timeout=30s")
        plane.wait_for(
            lambda: (
                plane.kubectl("get", "cm", "k1-child", "-n", "kopf", check=False).returncode == 1
            ),
            what="child GC",
        )
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(30)
        log.close()
    text = (plane.dir / "kopf.log").read_text()
    assert "deleting k1" in text and "Traceback" not in text, text[-3000:]
