"""Locust's master/worker mode on real processes: one run directory, written on the master.

Three shapes of the same run: ``--processes 2`` (workers forked here), a master and two
workers started as separate processes (the multi-host path, on loopback), and a worker killed
mid-run.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import free_ports
from tests.locust_runs import REPO, locust_cmd, locust_request_count, records, run_json, run_locust
from tritonload.core.numbers import run_numbers

pytestmark = pytest.mark.integration

SCENARIO = "locustfiles/mixed_models.py"


def _host(target) -> str:
    return f"{target.host}:{target.http_port}"


def _assert_one_run_from_workers(run_dir: Path, workers: int, users: int) -> None:
    rows = records(run_dir)
    meta = run_json(run_dir)
    assert rows.worker.nunique() == workers  # every worker's records, told apart
    assert len(rows) == locust_request_count(run_dir) == meta["request_count"]
    assert set(meta["workers"]) == set(rows.worker.unique())
    for name, worker in meta["workers"].items():
        assert worker["state"] == "done", (name, worker)
        assert worker["records"] == int((rows.worker == name).sum())
        assert worker["host"] and worker["pid"]
        assert len(worker["client_cpu"]["samples"]) >= 2  # the worker's CPU, for validity
    assert sum(w["users"] for w in meta["workers"].values()) == users == meta["users"]
    # The numbers come from the union of the records: per model, exactly numpy's P95.
    numbers = run_numbers(run_dir, by=("model",))
    window = numbers.window
    for (model,), group in numbers.groups.items():
        mine = rows[(rows.model == model) & rows.ok]
        done = mine.intended_start_ns + (mine.latency_us * 1000).astype("int64")
        steady = mine[(done >= window.start_ns) & (done < window.end_ns)]
        assert group.percentile_ms(95) == pytest.approx(
            np.percentile(steady.latency_us, 95) / 1000.0)
    # Locust's own CSV: the workers' 3-digit buckets reach the master as they are.
    with open(run_dir / "locust_stats.csv") as handle:
        p95s = [row["95%"] for row in csv.DictReader(handle)]
    assert any("." in value and float(value) % 1 for value in p95s), p95s
    # Live per-model percentiles: the merge of the workers' histograms, every model present.
    live = json.loads((run_dir / "live.json").read_text())
    assert set(live["p95_ms_by_model"]) == set(rows.model.unique())
    assert live["requests"] == len(rows)


def test_two_processes_write_one_run_directory_with_every_record(tmp_path, target):
    runs = tmp_path / "runs"
    proc = run_locust(SCENARIO, "--processes", "2", "-u", "4", "-r", "4", "-t", "4s",
                      "--host", _host(target), "--run-dir", str(runs / "run"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "not installed" not in proc.stderr
    run_dirs = [p for p in runs.iterdir() if p.is_dir()]
    assert len(run_dirs) == 1, run_dirs  # the master's; the workers keep none
    _assert_one_run_from_workers(run_dirs[0], workers=2, users=4)


def _start_workers(port: int, count: int, cwd: Path) -> list[subprocess.Popen]:
    """Workers as their own processes, with no --host: the master sends the target."""
    command = [sys.executable, "-m", "locust", "-f", str(REPO / SCENARIO), "--worker",
               "--master-host", "127.0.0.1", "--master-port", str(port), "--loglevel", "WARNING"]
    return [subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for _ in range(count)]


def _master(port: int, target, run_dir: Path, seconds: int, *extra: str) -> subprocess.Popen:
    command = locust_cmd(SCENARIO, "--master", "--expect-workers", "2",
                         "--expect-workers-max-wait", "60", "--master-bind-port", str(port),
                         "-u", "4", "-r", "4", "-t", f"{seconds}s", "--host", _host(target),
                         "--run-dir", str(run_dir), *extra)
    return subprocess.Popen(command, cwd=run_dir.parent, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(procs: list[subprocess.Popen], timeout: float = 90) -> list[tuple[int, str]]:
    out = []
    for proc in procs:
        _, stderr = proc.communicate(timeout=timeout)
        out.append((proc.returncode, stderr))
    return out


def test_master_and_workers_as_separate_processes_through_the_cli(tmp_path, target):
    """``tritonload run --master`` and two ``tritonload run --worker``, as on three hosts."""
    port = str(free_ports(1, start=25557)[0])
    run_dir = tmp_path / "run"
    cli = [sys.executable, "-m", "tritonload.cli", "run", str(REPO / SCENARIO)]
    master = subprocess.Popen(
        [*cli, "--master", "--expect-workers", "2", "--master-port", port, "-u", "4", "-t", "5s",
         "--url", _host(target), "--run-dir", str(run_dir), "--slo", "p95=5s"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    workers = [subprocess.Popen([*cli, "--worker", "--master-host", "127.0.0.1",
                                 "--master-port", port],
                                cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for _ in range(2)]
    master_out = master.communicate(timeout=120)[0]
    ends = _finish(workers)
    assert master.returncode == 0, master_out[-2000:]
    assert "SLO p95" in master_out and "OK" in master_out  # judged once, on the master
    assert all(c == 0 for c, _ in ends), [e[-1000:] for _, e in ends]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # workers keep nothing
    _assert_one_run_from_workers(run_dir, workers=2, users=4)


def test_open_loop_rate_is_the_total_over_the_workers(tmp_path, target):
    run_dir = tmp_path / "run"
    proc = run_locust(SCENARIO, "--processes", "2", "-u", "4", "-r", "4", "-t", "8s",
                      "--host", _host(target), "--run-dir", str(run_dir), "--mode", "open",
                      "--rate", "200", "--arrival", "constant", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = records(run_dir)
    assert rows.worker.nunique() == 2
    # Sends scheduled in the middle of the run, counted per second of schedule.
    start = rows.intended_start_ns.min() + 2e9
    span_s = 4.0
    scheduled = rows.intended_start_ns
    inside = rows[(scheduled >= start) & (scheduled < start + span_s * 1e9)]
    assert len(inside) / span_s == pytest.approx(200, rel=0.05)
    # Both workers' ledgers, merged on the master. Sends still in flight when the users
    # stop were scheduled but have no record (14 of 1,593 in one run).
    arrivals = run_json(run_dir)["arrivals"]
    assert len(rows) <= arrivals["scheduled"] <= len(rows) * 1.02


def test_a_killed_worker_is_recorded_as_lost_and_its_records_are_kept(tmp_path, target):
    port = free_ports(1, start=26557)[0]
    run_dir = tmp_path / "run"
    master = _master(port, target, run_dir, 12)
    victim, survivor = _start_workers(port, 2, tmp_path)
    deadline = time.monotonic() + 60
    while not (run_dir / "live.json").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(3.0)  # a few batches from each worker
    os.kill(victim.pid, signal.SIGKILL)
    (code, stderr), _, _ = _finish([master, victim, survivor])
    assert code == 0, stderr[-2000:]
    meta = run_json(run_dir)
    rows = records(run_dir)
    states = sorted(w["state"] for w in meta["workers"].values())
    assert states == ["done", "lost"], meta["workers"]
    lost_id, lost = next((k, w) for k, w in meta["workers"].items() if w["state"] == "lost")
    assert lost["records"] > 0 and lost["records"] == int((rows.worker == lost_id).sum())
    assert lost["last_record_ns"] == int(rows[rows.worker == lost_id].start_ns.max())
    assert lost["last_record_ns"] < meta["ended_ns"] - 3e9  # it stopped well before the end
    assert len(rows) == meta["request_count"]  # what it sent before dying is all there
