"""The router overhead benchmark runs end to end at a tiny size, so it cannot rot."""

import json
import subprocess
import sys

from tests.conftest import REPO


def test_router_overhead_bench_runs(tmp_path):
    out = tmp_path / "router.json"
    cmd = [sys.executable, "bench/router_overhead.py", "--requests", "20", "--seconds", "1",
           "--concurrency", "4", "--warmup", "10", "--json", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    for series in ("whole", "streamed_16_chunks"):
        assert result[series]["added_p50_ms"] > -10  # a number, not a crash
        assert result[series]["direct_p50_ms"] > 0
    throughput = result["throughput"]
    assert throughput["requests_per_s"] > 0 and throughput["router_cpu_us_per_request"] > 0
