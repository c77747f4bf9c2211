"""`infleet simulate`: seeded determinism, the JSON contract, --compare, traces (the
shipped one too), faults and cold starts, calibration from bench output, the plot, and
errors that name the flag."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from infleet.autoscaler import policy as operator_policy
from infleet.autoscaler.simulate_cli import main
from infleet.autoscaler.simulator import policies
from infleet.autoscaler.simulator.calibration import from_bench
from infleet.autoscaler.simulator.results import summary
from infleet.autoscaler.simulator.run import policy_spec_for, simulate
from infleet.autoscaler.simulator.scenarios import get_scenario
from infleet.autoscaler.simulator.service_model import ReplicaModel

CONTRACT = {
    "scenario": str,
    "policy": str,
    "requests": int,
    "slo_attainment": float,
    "ttft_p95_s": float,
    "cost": float,
    "spot_interruptions": int,
    "requests_failed": int,
}


def short(name: str, minutes: float = 10.0, warmup_s: float = 300.0):
    return dataclasses.replace(get_scenario(name), duration_s=minutes * 60, warmup_s=warmup_s)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "infleet", "simulate", *args], capture_output=True, text=True
    )


def test_the_simulator_runs_the_operators_policy_function():
    assert policies.decide is operator_policy.decide


def test_same_seed_same_results_other_seed_other_results():
    scenario = short("spot-storm")
    first = summary(simulate(scenario, "infleet", 11))
    again = summary(simulate(scenario, "infleet", 11))
    other = summary(simulate(scenario, "infleet", 12))
    assert first == again
    assert first["requests"] != other["requests"]
    assert first["requests"] > 100_000  # 10 minutes at 360 req/s


def test_json_contract():
    out = run_cli("--scenario", "steady", "--policy", "infleet", "--seed", "3", "--json",
                  "--hours", "0.05")  # fmt: skip
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    for key, kind in CONTRACT.items():
        assert isinstance(result[key], kind), key
    assert (result["scenario"], result["policy"]) == ("steady", "infleet")
    assert set(result["gpu_hours"]) == {"dedicated", "spot"}
    assert 0.0 <= result["slo_attainment"] <= 1.0
    expected = sum(
        result["gpu_hours"][p] * result["prices_per_gpu_hour"][p] for p in ("dedicated", "spot")
    )
    assert result["cost"] == pytest.approx(expected, abs=0.02)
    assert result["requests_completed"] <= result["requests"]
    assert result["faults"] == []


def test_compare_prints_one_row_per_policy(capsys):
    assert main(["--scenario", "steady", "--compare", "--hours", "0.02"]) == 0
    table = capsys.readouterr().out
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    assert [r.split("|")[1].strip() for r in rows[1:]] == list(policies.POLICY_NAMES)
    assert "| static-peak       | 1.0000" in table and "100%" in table


def test_a_csv_trace_drives_the_fleet(tmp_path, capsys):
    trace = tmp_path / "azure.csv"
    lines = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
    for i in range(600):  # 5 requests a second for two minutes, ISO timestamps
        stamp = f"2023-11-16 18:{15 + i // 300:02d}:{(i // 5) % 60:02d}.{i % 5}000000"
        lines.append(f"{stamp},{200 + i},{20 + i % 7}")
    trace.write_text("\n".join(lines) + "\n")
    assert main(["--trace", str(trace), "--scenario", "steady", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["scenario"] == "steady+trace" and result["requests"] == 600
    assert result["requests_completed"] + result["requests_failed"] == 600


def test_calibration_from_bench_output_moves_the_replica_model(tmp_path):
    figures = {
        "requests": 64, "input_tokens": 64 * 512, "output_tokens": 64 * 128, "wall_s": 20.0,
        "output_tok_s": 409.6, "total_tok_s": 2048.0, "ttft_p50_s": 0.3, "itl_p50_s": 0.05,
    }  # fmt: skip
    report = {"models": {"tiny": {"workloads": {"online": {"ours": figures, "hf": {}}}}}}
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(report))
    model = from_bench(path)
    batch = figures["output_tok_s"] * figures["itl_p50_s"]
    context = batch * (512 + 64)
    assert model.step_s(batch, 0, context) == pytest.approx(0.05)
    assert model.prefill_s_per_token != ReplicaModel().prefill_s_per_token
    (tmp_path / "empty.json").write_text("{}")
    with pytest.raises(ValueError, match="no bench figures"):
        from_bench(tmp_path / "empty.json")
    # The policy's capacity prior is the calibration profile (the same replica model).
    calibrated = dataclasses.replace(get_scenario("steady"), model=model)
    prior = policy_spec_for(calibrated).tuning.prior
    assert prior.decode_tok_s == pytest.approx(model.decode_tok_s(model.max_num_seqs, 1152))
    assert prior != policy_spec_for(get_scenario("steady")).tuning.prior
    out = run_cli("--calibration", str(tmp_path / "missing.json"))
    assert out.returncode == 2 and "--calibration" in out.stderr


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "run.png"
    assert main(["--scenario", "steady", "--hours", "0.02", "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_trace_reads_seconds_from_the_start_too(tmp_path, capsys):
    trace = tmp_path / "seconds.csv"
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n0.5,100,10\n1.25,2000,5\n")
    assert main(["--trace", str(trace), "--scenario", "steady", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["requests"] == 2


def test_the_shipped_trace_replays_at_its_speedups():
    short, fast = get_scenario("trace-1x"), get_scenario("trace-4x")
    assert short.arrivals.times[-1] == pytest.approx(4 * fast.arrivals.times[-1])
    assert len(short.arrivals.times) == len(fast.arrivals.times) > 10_000
    assert short.peak_rps < fast.peak_rps


def test_faults_and_cold_start_on_the_command_line(capsys):
    args = ["--scenario", "steady", "--hours", "0.4", "--json", "--cold-start", "300",
            "--fault", "metrics-blackout:300:600", "--fault", "spot-reclaim-all:1200",
            "--fault", "provisioning-delay:0:600:400"]  # fmt: skip
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    blackout, reclaim, delay = result["faults"]
    assert blackout["fault"] == "metrics-blackout:300:600" and blackout["window_s"] == [300, 900]
    assert not blackout["scaled_down"] and blackout["slo_attainment"] > 0.95
    assert blackout["replicas_desired_min"] >= blackout["replicas_desired_at_start"]
    assert reclaim["fault"] == "spot-reclaim-all:1200" and reclaim["requests"] > 0
    assert result["spot_interruptions"] >= reclaim["replicas_desired_at_start"] - 2
    assert delay["fault"] == "provisioning-delay:0:600:400"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scenario", "sunny"], "--scenario 'sunny' is not one of"),
        (["--policy", "yolo"], "--policy 'yolo' is not one of"),
        (["--hours", "0"], "--hours must be > 0"),
        (["--tick", "10"], "--tick must be between"),
        (["--trace", "/nonexistent.csv"], "--trace /nonexistent.csv: no such file"),
        (["--fault", "earthquake:1"], "--fault 'earthquake:1': the kind must be one of"),
        (["--fault", "metrics-blackout:10"], "want metrics-blackout:START_S:DURATION_S"),
        (["--fault", "metrics-blackout:x:10"], "(numbers of seconds)"),
        (["--fault", "metrics-blackout:10:0"], "DURATION_S must be > 0"),
        (["--fault", "spot-reclaim-all:-5"], "START_S must be >= 0"),
        (["--cold-start", "0"], "--cold-start must be between 0 and 7200"),
    ],
)
def test_bad_input_is_a_clear_error(args, message, capsys):
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_without_matplotlib_plot_is_a_clear_error_before_simulating(tmp_path):
    script = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from infleet.autoscaler.simulate_cli import main\n"
        f"sys.exit(main(['--scenario', 'diurnal', '--plot', {str(tmp_path / 'x.png')!r}]))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 2
    assert "--plot needs matplotlib" in out.stderr
    assert "simulated in" not in out.stderr  # refused before the 24-hour run
