"""The bench matrix: cells, files, and one small real bench end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import free_ports
from tests.locust_runs import REPO
from tritonload.cli.bench import Matrix
from tritonload.core.errors import UsageError


def test_default_matrix_is_the_demo_ladder():
    cells = Matrix().cells()
    assert len(cells) == 2 * 2 * 2 * 3
    names = {c.name for c in cells}
    assert "grpc-async-on-c16" in names and "http-sync-off-c1" in names


def test_sync_and_async_cells_have_equal_requests_in_flight():
    matrix = Matrix(levels=(16,), max_in_flight=8)
    by_mode = {c.mode: c.users_and_in_flight() for c in matrix.cells() if c.protocol == "grpc"}
    assert by_mode == {"sync": (16, 1), "async": (2, 8)}


def test_batching_off_uses_the_twins():
    cell = next(c for c in Matrix().cells() if c.batching == "off")
    assert cell.mix() == ("text_classifier_nobatch:5,image_classifier_nobatch:1,"
                          "recommender_nobatch:3")


def test_rates_make_open_loop_cells():
    cells = Matrix(rates=(50, 100), protocols=("http",), batching=("on",)).cells()
    assert [c.name for c in cells] == ["http-open-on-r50", "http-open-on-r100"]


def test_matrix_files(tmp_path):
    toml = tmp_path / "m.toml"
    toml.write_text('protocols = ["grpc"]\nlevels = [2, 8]\nmix = "recommender:1"\n')
    yaml = tmp_path / "m.yaml"
    yaml.write_text("protocols: [http]\nmodes: [async]\nwindow_s: 1.5\n")
    assert Matrix.from_file(toml).levels == (2, 8)
    assert Matrix.from_file(yaml, batching=("on",)).window_s == 1.5
    assert len(Matrix.from_file(yaml, batching=("on",)).cells()) == 3


@pytest.mark.parametrize("content, fragment", [
    ("colour = 3\n", "unknown key 'colour'"),
    ("protocols = [\"smtp\"]\n", "choose from grpc, http"),
    ("levels = [0]\n", "levels must be >= 1"),
    ("mix = \"recommender_nobatch:1\"\n", "name the batching model"),
    ("levels = [\n", "matrix file"),
])
def test_bad_matrix_files_are_one_line(tmp_path, content, fragment):
    path = tmp_path / "bad.toml"
    path.write_text(content)
    with pytest.raises(UsageError, match=fragment):
        Matrix.from_file(path)


@pytest.mark.integration
def test_small_bench_writes_report_and_headline(tmp_path):
    http, grpc, metrics = free_ports(start=19200)
    out = tmp_path / "bench"
    proc = subprocess.run(
        [sys.executable, "-m", "tritonload.cli", "bench", "-o", str(out), "--protocols", "http",
         "--modes", "sync,async", "--batching", "on,off", "--levels", "4", "--max-in-flight", "4",
         "--mix", "recommender:1", "--warmup", "1", "--window", "1", "--max-windows", "4",
         "--models", "recommender,recommender_nobatch",
         "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics)],
        capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert sorted(p.name for p in (out / "runs").iterdir()) == [
        "http-async-off-c4", "http-async-on-c4", "http-sync-off-c4", "http-sync-on-c4"]
    for run_dir in (out / "runs").iterdir():
        stability = json.loads((run_dir / "run.json").read_text())["stability"]
        assert stability["rule"] == {"windows": 3, "tolerance": 0.1, "max_windows": 4}
        windows = [(w["throughput_rps"], w["p95_ms"]) for w in stability["windows"]]
        assert 3 <= len(windows) <= 4
        # Whatever the machine's noise, the cell stopped exactly where the rule says: at the
        # first window after which the last three agree within 10%, else at the 4-window bound.
        for n in range(3, len(windows)):
            assert _agree(windows[n - 3:n]) is not True, (run_dir.name, windows)
        verdict = _agree(windows[-3:])
        assert verdict in (stability["stable"], None), (run_dir.name, windows)
        assert stability["stable"] or len(windows) == 4, (run_dir.name, windows)
    assert {p.name for p in out.iterdir()} >= {"report.html", "report.md", "report.json"}
    assert "headline" in proc.stdout and "recommender" in proc.stdout
    assert "batching gain" in proc.stdout


def _agree(windows: list[tuple[float, float]], tolerance: float = 0.1) -> bool | None:
    """perf_analyzer's rule on run.json's windows, written out independently of the engine:
    True when throughput and P95 are each within ``tolerance`` of their mean in every window,
    False when one is not, None when run.json's rounding (0.01 req/s, 0.001 ms) could decide.
    """
    verdicts = set()
    for values, slack in zip(zip(*windows, strict=True), (0.01, 0.001), strict=True):
        if any(v is None for v in values):
            verdicts.add(False)
            continue
        mean = sum(values) / len(values)
        worst = max(abs(v - mean) for v in values) - tolerance * mean
        verdicts.add(None if abs(worst) <= 2 * slack else worst < 0)
    if False in verdicts:
        return False
    return None if None in verdicts else True
