"""`infleet serve` refuses a model it cannot run before serving anything: exit code 2, one
line on stderr naming the architecture and the supported list, and the same line in the
termination-message file the kubelet reads (moved here by INFLEET_TERMINATION_LOG)."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def test_unsupported_architecture_exits_2_with_one_line_and_a_termination_message(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"architectures": ["GPTJForCausalLM"]}))
    log = tmp_path / "termination-log"
    env = {**os.environ, "INFLEET_TERMINATION_LOG": str(log)}
    done = subprocess.run(
        [sys.executable, "-m", "infleet", "serve", "--model", str(model), "--device", "cpu"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=tmp_path,  # not the repository root: its operator/ would shadow the stdlib
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    line = lines[0]
    assert line.startswith(
        "infleet serve: unsupported model architecture GPTJForCausalLM; supported: "
    )
    for name in (
        "LlamaForCausalLM",
        "MixtralForCausalLM",
        "Qwen2MoeForCausalLM",
        "Qwen3MoeForCausalLM",
    ):
        assert name in line
    assert log.read_text() == line
