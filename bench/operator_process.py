"""`infleet operator` as a subprocess of the benchmark: RSS and CPU from /proc, and the
reconcile-duration histogram from its /metrics."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from plane_process import proc_cpu_seconds

REPO = Path(__file__).resolve().parent.parent
HISTOGRAM = "infleet_operator_reconcile_duration_seconds"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class OperatorProcess:
    """`infleet operator` as a subprocess, with no KUBECONFIG and no ~/.kube/config (so
    only --kubeconfig can point it at the plane). Its peak RSS is the kernel's
    high-water mark (VmHWM), exact where sampling could miss a spike."""

    def __init__(self, kubeconfig: Path, workdir: Path, log_path: Path) -> None:
        self.metrics_port = free_port()
        home = workdir / "home"
        home.mkdir()
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        env["HOME"] = str(home)
        self.log_path = log_path
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "infleet", "operator", "--kubeconfig", str(kubeconfig),
             "--metrics-port", str(self.metrics_port), "--liveness-port", "0"],
            stdout=log_path.open("w"), stderr=subprocess.STDOUT, env=env, cwd=REPO,
        )  # fmt: skip

    def _status_mb(self, field: str) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
        raise KeyError(field)

    def rss_mb(self) -> float:
        return self._status_mb("VmRSS")

    def peak_rss_mb(self) -> float:
        return self._status_mb("VmHWM")

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.proc.pid)

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        return urllib.request.urlopen(url, timeout=10).read().decode()

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def histogram(text: str) -> dict[str, float]:
    """{le: cumulative count} of the reconcile-duration histogram, plus reconcile counts."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == HISTOGRAM + "_bucket":
                out[s.labels["le"]] = s.value
            elif s.name == "infleet_operator_reconciles_total":
                out["result:" + s.labels["result"]] = s.value
    return out


def histogram_quantile(q: float, before: dict[str, float], after: dict[str, float]) -> float:
    """PromQL's histogram_quantile over the buckets' increase between two scrapes."""
    bounds = sorted((float(le), after[le] - before.get(le, 0.0)) for le in after if le[0] != "r")
    total = bounds[-1][1]
    if total <= 0:
        return float("nan")
    rank, lower, below = q * total, 0.0, 0.0
    for upper, count in bounds:
        if count >= rank:
            if upper == float("inf"):
                return lower  # as PromQL: the highest finite bound
            return lower + (upper - lower) * (rank - below) / max(count - below, 1e-9)
        lower, below = upper, count
    return lower
