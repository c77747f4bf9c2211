"""Operator scale benchmark: N InferenceServices created, then a spec change to all.

    .venv/bin/python bench/operator_scale.py --services 1000 --json out.json

Three processes: the emulated control plane (hollow pods: Running and Ready at once,
no engine process), the real `infleet operator` (its RSS and CPU read from /proc), and
this driver, which creates the services one by one as `kubectl apply` of a big file
would, watches them, and times each one:

- reconcile latency: from sending its create (or spec patch) to the arrival, on this
  driver's watch, of the first version whose status.observedGeneration equals the new
  generation (the operator's first status write for that spec);
- ready: the first version with condition Ready=True at that generation;
- settled: Ready=True and Progressing=False (RolloutComplete) at that generation, i.e.
  every pod of the new spec ready and no old pod left.

The operator's own infleet_operator_reconcile_duration_seconds histogram (one reconcile:
render, apply, status) is scraped from its /metrics after each phase as a second view.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from milestones import Milestones
from operator_process import OperatorProcess, histogram, histogram_quantile
from plane_process import PlaneProcess, proc_cpu_seconds

from infleet.engine.bench.stats import percentile

REPO = Path(__file__).resolve().parent.parent
GVP = ("infleet.io", "v1alpha1")
PLURAL = "inferenceservices"


def service_manifest(name: str, namespace: str, index: int) -> dict[str, Any]:
    """A third each: dedicated + spot (1 + 1), dedicated only (1), spot only (1..2)."""
    mix = index % 3
    capacity = [
        {"dedicated": {"min": 1}, "spot": {"enabled": True, "max": 1, "preset": "gke"}},
        {"dedicated": {"min": 1}, "spot": {"enabled": False}},
        {"dedicated": {"min": 0}, "spot": {"enabled": True, "max": 2, "preset": "gke"}},
    ][mix]
    return {
        "apiVersion": "/".join(GVP),
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {"uri": "builtin:smollm2-135m-instruct"},
            "engine": {"kind": "infleet"},
            "resources": {"gpus": 1, "cpu": "100m", "memory": "256Mi"},
            "scaling": {"minReplicas": 2 if mix == 0 else 1, "maxReplicas": 2},
            "capacity": capacity,
        },
    }


def phase_summary(marks: Milestones, names: list[str], generation: int) -> dict[str, Any]:
    """Latencies (s) of one phase from the per-object times."""
    sent = [marks.sent[(n, generation)] for n in names]
    first = min(sent)

    def since_sent(times: dict[tuple[str, int], float]) -> list[float]:
        return [times[(n, generation)] - marks.sent[(n, generation)] for n in names]

    reconcile, ready = since_sent(marks.reconciled), since_sent(marks.ready)
    settled = [marks.settled[(n, generation)] for n in names]
    return {
        "send_seconds": round(max(sent) - first, 3),
        "reconcile_latency_p50_s": round(percentile(reconcile, 50), 3),
        "reconcile_latency_p99_s": round(percentile(reconcile, 99), 3),
        "reconcile_latency_max_s": round(max(reconcile), 3),
        "ready_latency_p50_s": round(percentile(ready, 50), 3),
        "ready_latency_p99_s": round(percentile(ready, 99), 3),
        "time_to_all_ready_s": round(max(marks.ready[(n, generation)] for n in names) - first, 3),
        "time_to_all_settled_s": round(max(settled) - first, 3),
    }


def node_pool(services: int) -> Any:
    """Ten dedicated and ten GKE-style spot nodes with room for every pod and a surge."""
    from infleet.localplane.nodes import SPOT_LABELS, SPOT_TAINTS, NodeGroup, NodePool

    gpus = 2 * services // 10 + 4
    big = {"gpus": gpus, "cpu": "1000", "memory": "4000Gi"}
    return NodePool(
        [
            NodeGroup("dedicated", 10, labels={"infleet.io/capacity": "dedicated"}, **big),
            NodeGroup("spot", 10, labels=dict(SPOT_LABELS), taints=list(SPOT_TAINTS), **big),
        ]
    )


def machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "versions": {name: metadata.version(name) for name in ("kopf", "kubernetes", "aiohttp")},
        "cpu_model": model,
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_kb / 2**20, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=False
        ).stdout.strip()

    head = git("rev-parse", "--short=12", "HEAD") or "unknown"
    return head + ("-dirty" if git("status", "--porcelain", "--", "operator", "bench") else "")


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        from infleet.localplane.plane import PlaneConfig

        octet = random.randrange(16, 120) * 2  # loopback networks no other plane uses
        config = PlaneConfig(
            hollow_pods=True,
            node_pool=node_pool(args.services),
            pod_network=f"127.{octet}.0.0/16",
            service_network=f"127.{octet + 1}.0.0/16",
        )
        self.args = args
        self.plane = PlaneProcess(config, workdir / "kubeconfig")
        log = args.json.with_suffix(".operator.log") if args.json else workdir / "operator.log"
        self.operator = OperatorProcess(self.plane.kubeconfig, workdir, log)
        from kubernetes import client
        from kubernetes import config as kconfig

        self.api = kconfig.new_client_from_config(config_file=str(self.plane.kubeconfig))
        self.api.user_agent = "bench"
        self.custom = client.CustomObjectsApi(self.api)
        self.marks = Milestones(self.api, *GVP, PLURAL)
        self.marks.start()

    def snapshot(self) -> dict[str, Any]:
        return {
            "histogram": histogram(self.operator.metrics()),
            "requests": self.plane.request_counts(),
            "operator_cpu_s": self.operator.cpu_seconds(),
            "plane_cpu_s": proc_cpu_seconds(self.plane.pid),
            "operator_rss_mb": self.operator.rss_mb(),
        }

    def wait(self, names: list[str], generation: int, timeout: float) -> None:
        missing = self.marks.wait_settled(names, generation, timeout)
        if missing:
            raise RuntimeError(
                f"{len(missing)} of {len(names)} not settled at generation {generation} after "
                f"{timeout:g} s (first: {missing[:3]}); operator log:\n{self.operator.log_tail()}"
            )

    def warm_up(self) -> None:
        """One service through to Ready: the operator's watches are up before timing."""
        self.marks.mark_sent("warmup", 1)
        self.custom.create_namespaced_custom_object(
            *GVP, "default", PLURAL, service_manifest("warmup", "default", 1)
        )
        self.wait(["warmup"], 1, self.args.timeout)

    def paced(self, names: list[str]) -> Any:
        """The names, each when it is due at --rate per second (0: at once)."""
        start = time.monotonic()
        for i, name in enumerate(names):
            if self.args.rate > 0:
                time.sleep(max(0.0, start + i / self.args.rate - time.monotonic()))
            yield i, name

    def create(self, names: list[str]) -> None:
        ns = self.args.namespace
        for i, name in self.paced(names):
            self.marks.mark_sent(name, 1)
            self.custom.create_namespaced_custom_object(
                *GVP, ns, PLURAL, service_manifest(name, ns, i)
            )

    def change_spec(self, names: list[str]) -> None:
        patch = {"spec": {"engine": {"args": ["--max-num-seqs=128"]}}}
        for _, name in self.paced(names):
            self.marks.mark_sent(name, 2)
            obj = self.custom.patch_namespaced_custom_object(
                *GVP, self.args.namespace, PLURAL, name, patch
            )
            if obj["metadata"]["generation"] != 2:
                raise RuntimeError(f"{name}: expected generation 2, got {obj['metadata']}")

    def phase(self, names: list[str], generation: int, send: Any) -> dict[str, Any]:
        before = self.snapshot()
        send(names)
        self.wait(names, generation, self.args.timeout)
        after = self.snapshot()
        h0, h1 = before["histogram"], after["histogram"]
        reconciles = sum(v - h0.get(k, 0.0) for k, v in h1.items() if k.startswith("result:"))
        requests = after["requests"] - before["requests"]
        return {
            **phase_summary(self.marks, names, generation),
            "operator_reconcile_p50_s": round(histogram_quantile(0.5, h0, h1), 4),
            "operator_reconcile_p99_s": round(histogram_quantile(0.99, h0, h1), 4),
            "reconciles_per_service": round(reconciles / len(names), 2),
            "operator_api_requests_per_service": round(
                sum(v for k, v in requests.items() if k.split()[0] == "operator") / len(names),
                2,
            ),
            "operator_cpu_s": round(after["operator_cpu_s"] - before["operator_cpu_s"], 2),
            "plane_cpu_s": round(after["plane_cpu_s"] - before["plane_cpu_s"], 2),
            "operator_rss_end_mb": round(after["operator_rss_mb"], 1),
            "api_requests": dict(requests.most_common()),
        }

    def run(self) -> dict[str, Any]:
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        load_before = os.getloadavg()
        self.warm_up()
        if self.args.namespace != "default":
            from kubernetes import client

            client.CoreV1Api(self.api).create_namespace({"metadata": {"name": self.args.namespace}})
        idle_rss = self.operator.rss_mb()
        names = [f"svc-{i:04d}" for i in range(self.args.services)]
        create = self.phase(names, 1, self.create)
        update = self.phase(names, 2, self.change_spec)
        return {
            "services": self.args.services,
            "rate_per_s": self.args.rate or "unpaced",
            "mix": "1/3 dedicated+spot (2 pods), 1/3 dedicated only (1), 1/3 spot only (1)",
            "create": create,
            "update": update,
            "operator_rss_idle_mb": round(idle_rss, 1),
            "operator_peak_rss_mb": round(self.operator.peak_rss_mb(), 1),
            "watch_events_seen": self.marks.events,
            "date": started,
            "commit": commit(),
            "command": " ".join(sys.argv),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            "machine": machine(),
        }

    def close(self) -> None:
        self.operator.stop()
        self.plane.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--services", type=int, default=1000, help="InferenceServices (1000)")
    p.add_argument("--namespace", default="bench", help="where they go (bench)")
    p.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="creates and spec patches per second (default 0: each as soon as the last is answered)",
    )
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per phase (900)")
    p.add_argument(
        "--json", type=Path, help="also write the result here (and the operator log beside it)"
    )
    args = p.parse_args(argv)
    if args.services < 1:
        p.error("--services must be at least 1")
    if args.rate < 0:
        p.error("--rate must be 0 (unpaced) or more")
    with tempfile.TemporaryDirectory(prefix="operator-scale-") as tmp:
        bench = Bench(args, Path(tmp))
        try:
            result = bench.run()
        finally:
            bench.close()
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    multiprocessing.freeze_support()
    sys.exit(main())
