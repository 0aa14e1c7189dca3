"""The bench matrix: cells, files, and one small real bench end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import free_ports
from tests.locust_runs import REPO, error_lines
from tritonload.cli.bench import Matrix
from tritonload.core.config import Target
from tritonload.core.errors import UsageError


def test_default_matrix_is_the_demo_ladder():
    cells = Matrix().cells()
    # batching × protocol × (sync, async at equal in flight, async at equal users) × level
    assert len(cells) == 2 * 2 * 3 * 3
    names = {c.name for c in cells}
    assert "grpc-async-on-c16" in names and "http-sync-off-c1" in names
    assert "grpc-async-on-u16x8" in names
    assert len(Matrix().schedule()) == 3 * len(cells)


def test_sync_and_async_cells_have_equal_requests_in_flight():
    matrix = Matrix(levels=(16,), max_in_flight=8, framings=("equal-in-flight",))
    by_mode = {c.mode: c.users_and_in_flight() for c in matrix.cells() if c.protocol == "grpc"}
    assert by_mode == {"sync": (16, 1), "async": (2, 8)}


def test_both_framings_at_one_level():
    matrix = Matrix(levels=(4,), protocols=("grpc",), batching=("on",), repetitions=3)
    cells = {c.name: (c.users_and_in_flight(), c.framings) for c in matrix.cells()}
    assert cells == {
        "grpc-sync-on-c4": ((4, 1), ("equal-in-flight", "equal-users")),
        "grpc-async-on-c4": ((1, 4), ("equal-in-flight",)),  # 4 in flight, like sync
        "grpc-async-on-u4x8": ((4, 8), ("equal-users",)),  # 4 users, like sync
    }
    tags = next(c for c in matrix.schedule() if c.cell_name == "grpc-async-on-u4x8").tags()
    assert tags == {"cell": "grpc-async-on-u4x8", "batching": "on", "rep": tags["rep"],
                    "users": "4", "in_flight": "8", "framing": "equal-users",
                    "shared_memory": "none"}


def test_an_async_cell_both_framings_ask_for_runs_once():
    matrix = Matrix(levels=(1, 8), protocols=("grpc",), batching=("on",), max_in_flight=8)
    async_cells = {c.name: (c.users_and_in_flight(), c.framings)
                   for c in matrix.cells() if c.mode == "async"}
    assert async_cells == {
        "grpc-async-on-c1": ((1, 1), ("equal-in-flight",)),
        "grpc-async-on-c8": ((1, 8), ("equal-in-flight", "equal-users")),  # = u1x8
        "grpc-async-on-u8x8": ((8, 8), ("equal-users",)),
    }


def test_async_only_matrices_have_no_equal_users_cells():
    """The sweep's matrix (async only): nothing to set the equal-users cells beside."""
    cells = Matrix(modes=("async",), levels=(1, 16), protocols=("grpc",), batching=("on",))
    assert [c.name for c in cells.cells()] == ["grpc-async-on-c1", "grpc-async-on-c16"]
    with pytest.raises(UsageError, match="equal-users framing"):
        Matrix(modes=("async",), framings=("equal-users",))


def test_schedule_runs_every_cell_once_per_round_in_a_seeded_shuffle():
    matrix = Matrix(repetitions=4, seed=7)
    cells = [c.name for c in matrix.cells()]
    runs = matrix.schedule()
    assert len(runs) == 4 * len(cells)
    orders = []
    for rep in range(1, 5):
        this_round = runs[(rep - 1) * len(cells): rep * len(cells)]
        assert {c.rep for c in this_round} == {rep}  # rounds are not mixed: interleaved
        assert sorted(c.cell_name for c in this_round) == sorted(cells)
        assert all(c.name == f"{c.cell_name}-rep{rep}" for c in this_round)
        orders.append([c.cell_name for c in this_round])
    assert len({tuple(o) for o in orders}) == 4  # a fresh shuffle per round
    assert orders[0] != cells
    # Seeded: the same seed gives the same schedule, another seed another one.
    assert [c.name for c in Matrix(repetitions=4, seed=7).schedule()] == [c.name for c in runs]
    assert [c.name for c in Matrix(repetitions=4, seed=8).schedule()] != [c.name for c in runs]
    # No cell always runs first or last: over 4 rounds the first and last places vary.
    assert len({o[0] for o in orders}) > 1 and len({o[-1] for o in orders}) > 1


def test_repetition_jobs_carry_cell_and_rep_tags(tmp_path):
    run = Matrix(levels=(4,), protocols=("grpc",), batching=("on",), repetitions=2).schedule()[-1]
    options = run.job(Target(host="127.0.0.1"), tmp_path / run.name).options
    tags = dict(options[i + 1].split("=", 1) for i, o in enumerate(options) if o == "--tag")
    assert tags["cell"] == run.cell_name and tags["rep"] == "2"
    assert run.name.endswith("-rep2")


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


def test_bench_with_no_stage_left_is_one_line(tmp_path):
    """Refused before any server starts."""
    proc = subprocess.run(
        [sys.executable, "-m", "tritonload.cli", "bench", "-o", str(tmp_path / "b"),
         "--no-capacity", "--no-cells"], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert error_lines(proc.stderr) == [
        "tritonload: error: nothing to run: --no-capacity and --no-cells together"]
    assert "Traceback" not in proc.stderr


@pytest.mark.integration
def test_small_bench_writes_report_and_headline(tmp_path):
    http, grpc, metrics = free_ports(start=19200)
    out = tmp_path / "bench"
    proc = subprocess.run(
        [sys.executable, "-m", "tritonload.cli", "bench", "-o", str(out), "--protocols", "http",
         "--modes", "sync,async", "--batching", "on,off", "--levels", "4", "--max-in-flight", "4",
         "--mix", "recommender:1", "--warmup", "1", "--window", "1", "--max-windows", "4",
         "--repetitions", "1", "--framings", "equal-in-flight", "--no-capacity",
         "--models", "recommender,recommender_nobatch",
         "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics)],
        capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert sorted(p.name for p in (out / "runs").iterdir()) == [
        "http-async-off-c4-rep1", "http-async-on-c4-rep1", "http-sync-off-c4-rep1",
        "http-sync-on-c4-rep1"]
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
    # The terminal prints the answer's tables (here only sync vs async: no capacity search,
    # so no capacity or batching block); the matrix's batching on/off comparison is in the
    # report.
    assert "Sync vs async, in both framings" in proc.stdout, proc.stdout
    assert "0 capacity searches, 4 comparison runs" in proc.stdout
    assert "stage 1/3" not in proc.stdout and "report: " in proc.stdout
    data = json.loads((out / "report.json").read_text())
    assert data["answer"]["models"] == [] and data["capacity"]["searches"] == []
    gains = [r for r in data["batching"] if r["model"] == "recommender"]
    assert [(r["mode"], r["load_level"]) for r in gains] == [("async", 4), ("sync", 4)], gains
    assert all(r["throughput_gain"] is not None for r in gains)


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


@pytest.mark.integration
def test_repetitions_run_interleaved_and_pair_in_both_framings(tmp_path):
    """A tiny real bench: 3 cells (sync, async at equal in flight, async at equal users) × 2
    interleaved rounds, then the report pairs the rounds in both framings."""
    http, grpc, metrics = free_ports(start=19210)
    out = tmp_path / "bench"
    matrix = tmp_path / "m.toml"
    matrix.write_text("stable_windows = 2\n")
    proc = subprocess.run(
        [sys.executable, "-m", "tritonload.cli", "bench", "-o", str(out), "--matrix", str(matrix),
         "--protocols", "grpc", "--modes", "sync,async", "--batching", "on", "--levels", "4",
         "--max-in-flight", "8", "--mix", "recommender:1", "--warmup", "0.5", "--window", "1",
         "--max-windows", "2", "--repetitions", "2", "--seed", "3", "--no-capacity",
         "--models", "recommender",
         "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics)],
        capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    cells = ["grpc-async-on-c4", "grpc-async-on-u4x8", "grpc-sync-on-c4"]
    runs = {p.name: json.loads((p / "run.json").read_text()) for p in (out / "runs").iterdir()}
    assert sorted(runs) == sorted(f"{c}-rep{r}" for c in cells for r in (1, 2))
    for name, meta in runs.items():
        tags = meta["extra"]["tags"]
        assert f"{tags['cell']}-rep{tags['rep']}" == name
    # Interleaved: every run of round 1 started before any run of round 2.
    starts = {r: [m["started_ns"] for m in runs.values() if m["extra"]["tags"]["rep"] == str(r)]
              for r in (1, 2)}
    assert max(starts[1]) < min(starts[2])
    assert runs["grpc-async-on-u4x8-rep1"]["users"] == 4
    assert runs["grpc-async-on-u4x8-rep1"]["load"]["level"] == 32
    pairs = json.loads((out / "report.json").read_text())["sync_vs_async"]["pairs"]
    pairs = [p for p in pairs if p["model"] == "recommender"]
    assert [(p["framing"], p["cell_b"], p["rounds"]) for p in pairs] == [
        ("equal-in-flight", "grpc-async-on-c4", 2), ("equal-users", "grpc-async-on-u4x8", 2)]
    assert all(p["throughput_ratio_lo"] is not None for p in pairs)


def test_shared_memory_cells_follow_the_wire_cells():
    matrix = Matrix(protocols=("grpc",), modes=("sync",), batching=("on",), levels=(4,),
                    repetitions=1, shared_memory=("none", "system"),
                    output_shared_memory_size=30_000_000)
    names = [c.cell_name for c in matrix.cells()]
    assert names == ["grpc-sync-on-c4", "grpc-sync-on-c4-shm"]
    shm = matrix.cells()[1]
    assert shm.tags()["shared_memory"] == "system"
    with pytest.raises(UsageError, match="output_shared_memory_size"):
        Matrix(output_shared_memory_size=1000)  # no system cells to give it to


@pytest.mark.integration
def test_a_bench_sets_shared_memory_beside_the_wire(tmp_path):
    """wide_ranker (29 MB answers) over the wire and in shared memory, 2 rounds: the report's
    comparison has the three ratios, and the other comparisons read the wire cells only."""
    http, grpc, metrics = free_ports(start=19220)
    out = tmp_path / "bench"
    proc = subprocess.run(
        [sys.executable, "-m", "tritonload.cli", "bench", "-o", str(out), "--protocols", "grpc",
         "--modes", "sync", "--batching", "on", "--levels", "2", "--mix", "wide_ranker:1",
         "--warmup", "0.5", "--window", "1", "--max-windows", "3", "--repetitions", "2",
         "--shared-memory", "none,system", "--output-shared-memory-size", "30000000",
         "--no-capacity", "--models", "wide_ranker",
         "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics)],
        capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert sorted(p.name for p in (out / "runs").iterdir()) == [
        "grpc-sync-on-c2-rep1", "grpc-sync-on-c2-rep2", "grpc-sync-on-c2-shm-rep1",
        "grpc-sync-on-c2-shm-rep2"]
    data = json.loads((out / "report.json").read_text())
    (row,) = [r for r in data["shared_vs_wire"] if r["model"] == "wide_ranker"]
    assert row["rounds"] == 2 and row["cell_b"] == "grpc-sync-on-c2-shm"
    assert row["mean_bytes_received_a"] > 28_000_000 > 1000 > row["mean_bytes_received_b"]
    # The wire copies 29 MB per answer through the client; shared memory does not.
    assert row["cpu_b_us"] < row["cpu_a_us"] and row["cpu_ratio"] < 1
    assert row["throughput_ratio_lo"] is not None and row["p95_ratio_lo"] is not None
    wire_runs = {r["run_id"] for r in data["runs"] if r["shared_memory"] == "none"}
    assert len(wire_runs) == 2 and {c["run_id"] for c in data["capacity"]["curves"]} == wire_runs
    text = (out / "report.md").read_text()
    assert "## Shared memory vs the wire" in text
    assert "Shared memory vs the wire, wide_ranker" in text
