"""What `tritonload run` prints when its output is not a terminal, and for a bad flag value."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.locust_runs import REPO, error_lines

pytestmark = pytest.mark.integration


def _run(tmp_path, target, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tritonload.cli", "run", "tests/engine/locustfile_matrix.py",
         "--user-class", "GrpcUser", "--url", target.as_url(),
         "--run-dir", str(tmp_path / "run"), *args],
        capture_output=True, text=True, timeout=180, cwd=REPO)


def test_piped_progress_is_plain_lines_at_most_every_5_s(tmp_path, target):
    proc = _run(tmp_path, target, "-u", "1", "-t", "7s")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert "" not in lines  # a redrawn bar in a log is a storm of blank lines
    progress = [ln for ln in lines if re.match(r"locustfile_matrix \(1 users\): \d+/7 s ", ln)]
    assert 1 <= len(progress) <= 2, proc.stdout  # 7 s of load, one line per 5 s at most
    assert "req/s" in progress[0] and "requests" in progress[0]


def test_max_in_flight_0_is_one_line_and_exit_2(tmp_path, target):
    proc = _run(tmp_path, target, "-u", "1", "-t", "3s", "--mode", "async",
                "--max-in-flight", "0")
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert error_lines(proc.stderr) == ["tritonload: error: --max-in-flight must be >= 1, got 0"]
    assert "Traceback" not in proc.stderr and "locust exited" not in proc.stderr


def test_a_decoupled_model_in_the_mix_is_one_line_and_exit_2(tmp_path, target):
    proc = _run(tmp_path, target, "-u", "1", "-t", "3s", "--mix", "text_generator:1")
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    (line,) = error_lines(proc.stderr)
    assert line.startswith("tritonload: error: text_generator is a decoupled (streaming) model")
    assert "Traceback" not in proc.stderr
