"""Async mode is truly concurrent; every way a run ends is prompt and keeps its records."""

from __future__ import annotations

import signal
import subprocess
import time

import pandas as pd
import psutil
import pytest

from tests.conftest import free_ports
from tests.locust_runs import locust_cmd, locust_request_count, records, run_json, run_locust
from tritonload.server import EmbeddedTriton, Ports, demo_fleet

pytestmark = pytest.mark.integration
MATRIX = "tests/engine/locustfile_matrix.py"


@pytest.fixture(scope="module")
def slow_batching_server():
    """recommender with a 20 ms per-batch base cost: batching is what makes it fast.

    The 5 ms queue delay lets the batcher gather all 8 requests a client sends back to back
    (with 1 ms, a batch often leaves before the last few sends arrive).
    """
    overrides = {"cost_base_us": 20000, "cost_per_item_us": 100, "instances": 1,
                 "max_queue_delay_us": 5000}
    fleet = [m for m in demo_fleet({"recommender": overrides}) if m.name == "recommender"]
    with EmbeddedTriton(fleet, ports=Ports(*free_ports(start=18800))) as server:
        yield server


def _steady(rows: pd.DataFrame, skip_s: float = 1.0) -> pd.DataFrame:
    start = rows.start_ns.min() + skip_s * 1e9
    return rows[rows.start_ns >= start]


def _throughput(rows: pd.DataFrame) -> float:
    span_s = (rows.start_ns.max() - rows.start_ns.min()) / 1e9
    return len(rows) / span_s


@pytest.mark.parametrize("user", ["GrpcUser", "HttpUser"])
def test_one_async_user_with_8_in_flight_is_truly_concurrent(tmp_path, slow_batching_server,
                                                             user):
    host = slow_batching_server.http_url
    results = {}
    for mode in ("sync", "async"):
        run_dir = tmp_path / mode
        proc = run_locust(MATRIX, user, "-u", "1", "-t", "6s", "--host", host, "--mode", mode,
                          "--max-in-flight", "8", "--run-dir", str(run_dir))
        assert proc.returncode == 0, proc.stderr[-2000:]
        results[mode] = _steady(records(run_dir))
    sync_rps, async_rps = _throughput(results["sync"]), _throughput(results["async"])
    assert async_rps >= 4 * sync_rps, (sync_rps, async_rps)
    # Little's law: requests in flight = throughput × mean latency.
    in_flight = async_rps * results["async"].latency_us.mean() / 1e6
    assert 6.5 <= in_flight <= 8.5, in_flight
    batches = pd.read_parquet(tmp_path / "async" / "server_batches.parquet")
    assert batches[batches.model == "recommender"].batch_size.max() > 1


def _wait_for_load(proc: subprocess.Popen, run_dir, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        if (run_dir / "run.json").exists():
            time.sleep(2.0)  # let requests flow
            return
        time.sleep(0.1)
    raise AssertionError("load never started")


def _assert_records_intact(run_dir) -> None:
    meta = run_json(run_dir)
    rows = records(run_dir)
    assert meta["ended_ns"] is not None
    assert len(rows) > 50
    assert len(rows) == meta["request_count"] == locust_request_count(run_dir)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_mid_run_exits_within_5s_with_records(tmp_path, target, sig):
    run_dir = tmp_path / "run"
    cmd = locust_cmd("locustfiles/mixed_models.py", "-u", "4", "-t", "60s", "--host",
                     f"{target.host}:{target.http_port}", "--mode", "async", "--max-in-flight", "4",
                     "--run-dir", str(run_dir))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_load(proc, run_dir)
        sent = time.monotonic()
        proc.send_signal(sig)
        proc.communicate(timeout=30)
        assert time.monotonic() - sent < 5.0
    finally:
        proc.kill()
    assert proc.returncode in (0, 1)  # locust: 1 only if some request failed
    _assert_records_intact(run_dir)


def test_run_time_limit_ends_promptly(tmp_path, target):
    run_dir = tmp_path / "run"
    proc = run_locust("locustfiles/mixed_models.py", "-u", "4", "-t", "3s", "--host",
                      f"{target.host}:{target.http_port}", "--run-dir", str(run_dir))
    ended = time.time_ns()
    assert proc.returncode == 0, proc.stderr[-2000:]
    meta = run_json(run_dir)
    assert (ended - meta["started_ns"]) / 1e9 < 3 + 5
    _assert_records_intact(run_dir)


def test_without_host_the_embedded_server_is_started_and_stopped(tmp_path):
    http = free_ports(start=18900)[0]
    run_dir = tmp_path / "run"
    proc = run_locust(MATRIX, "HttpUser", "-u", "2", "-t", "3s", "--embedded-port", str(http),
                      "--run-dir", str(run_dir), timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert run_json(run_dir)["target"]["embedded"] is True
    assert len(records(run_dir)) > 50
    leftovers = [p for p in psutil.process_iter(["name", "cmdline"])
                 if p.info["name"] == "tritonserver"
                 and f"--http-port={http}" in " ".join(p.info["cmdline"] or [])]
    assert not leftovers
