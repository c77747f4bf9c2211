"""kubectl against the cluster under test: the local plane or INFLEET_E2E_KUBECONFIG.

Scenarios only use kubectl and pods, never emulator internals, so the same tests run
on kind/k3d/GKE. The one capability check: a local-plane node carries the label
`localplane.infleet.io/node-group`, and only there a spot interruption is injected by
annotation; elsewhere the documented fallback (taint + `kubectl drain`) is used.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

LOCAL_NODE_LABEL = "localplane.infleet.io/node-group"
INTERRUPT_ANNOTATION = "localplane.infleet.io/interrupt"
CLIENT = (Path(__file__).with_name("client.py")).read_text()


@dataclass(slots=True)
class Cluster:
    kubeconfig: Path
    cache: Path
    operator: tuple[str, str]  # (namespace, deployment) of the operator

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [
                "kubectl",
                "--kubeconfig",
                str(self.kubeconfig),
                "--cache-dir",
                str(self.cache),
                *args,
            ],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}:\n{proc.stderr}")
        return proc

    def apply(self, *docs: dict[str, Any], check: bool = True) -> subprocess.CompletedProcess[str]:
        text = yaml.safe_dump_all(list(docs), default_style='"')  # no YAML 1.1 surprises
        return self.kubectl("apply", "-f", "-", input=text, check=check)

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def exists(self, *args: str) -> bool:
        return self.kubectl("get", *args, check=False).returncode == 0

    def wait_for(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline, last = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            last = predicate()
            if last:
                return last
            time.sleep(0.5)
        raise AssertionError(f"timed out after {timeout:g}s waiting for {what} (last: {last!r})")

    def is_local_plane(self) -> bool:
        nodes = self.get("nodes")["items"]
        return any(LOCAL_NODE_LABEL in (n["metadata"].get("labels") or {}) for n in nodes)

    def run_client(
        self, ns: str, name: str, url: str, requests: int, max_tokens: int, prompt: str
    ) -> None:
        """Start a pod that sends `requests` concurrent chat completions to `url`."""
        self.apply(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "namespace": ns},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "client",
                            "image": "python:3.12-alpine",
                            "command": [
                                "python",
                                "-c",
                                CLIENT,
                                url,
                                str(requests),
                                str(max_tokens),
                                prompt,
                            ],
                        }
                    ],
                },
            }
        )

    def client_result(self, ns: str, name: str, timeout: float = 300) -> list[dict[str, Any]]:
        phase = self.wait_for(
            lambda: (
                self.get("pod", name, "-n", ns)["status"].get("phase") in ("Succeeded", "Failed")
                and self.get("pod", name, "-n", ns)["status"]["phase"]
            ),
            timeout,
            f"client pod {name} to finish",
        )
        logs = self.kubectl("logs", name, "-n", ns).stdout
        assert phase == "Succeeded", logs
        return json.loads(logs.strip().splitlines()[-1])
