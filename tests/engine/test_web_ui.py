"""The Locust web UI way in: each test started from the UI gets its own complete run directory."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest

from tests.conftest import free_ports
from tests.locust_runs import REPO, locust_request_count, records, run_json

pytestmark = pytest.mark.integration


def _call(url: str, data: dict | None = None) -> int:
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    with urllib.request.urlopen(url, data=body, timeout=10) as response:
        return response.status


def _wait_for(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            _call(url)
            return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{url} never answered")


def _stop_test(ui: str, settle_s: float) -> None:
    """The UI's Stop, then time for the run directory to be written."""
    assert _call(ui + "/stop", {}) == 200
    time.sleep(settle_s)


def _quit(proc: subprocess.Popen) -> None:
    """End Locust the way a service manager would (SIGTERM), and wait for it."""
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)


def test_two_tests_from_the_web_ui_make_two_run_directories(tmp_path, target):
    port = free_ports(1, start=19300)[0]
    ui = f"http://127.0.0.1:{port}"
    run_dir = tmp_path / "ui"
    proc = subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", str(REPO / "tests/engine/locustfile_matrix.py"),
         "HttpUser", "--host", target.as_url(), "--web-host", "127.0.0.1", "--web-port",
         str(port), "--run-dir", str(run_dir), "--loglevel", "WARNING"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        _wait_for(ui + "/")
        for _ in range(2):
            assert _call(ui + "/swarm", {"user_count": 2, "spawn_rate": 10}) == 200
            time.sleep(3)
            _stop_test(ui, settle_s=1)
        _quit(proc)
    finally:
        proc.kill()
    assert proc.returncode == 0
    second = run_dir.with_name("ui-2")
    for directory in (run_dir, second):
        meta = run_json(directory)
        assert meta["ended_ns"] and meta["request_count"] == len(records(directory)) > 20
    assert run_json(run_dir)["run_id"] != run_json(second)["run_id"]
    # A new test from the UI resets Locust's stats too: both tools count per test.
    for directory in (run_dir, second):
        assert locust_request_count(directory) == len(records(directory))


def test_the_triton_tab_shows_the_masters_merged_numbers_with_processes(tmp_path, target):
    """``--processes 2``: the form's open-loop settings reach both workers; the tab merges."""
    ui_port, master_port = free_ports(1, start=19400)[0], free_ports(1, start=19457)[0]
    ui = f"http://127.0.0.1:{ui_port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", str(REPO / "locustfiles/mixed_models.py"),
         "--processes", "2", "--master-bind-port", str(master_port), "--master-port",
         str(master_port), "--host", f"{target.host}:{target.http_port}", "--web-host",
         "127.0.0.1", "--web-port", str(ui_port), "--loglevel", "WARNING"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        _wait_for(ui + "/")
        form = {"user_count": 4, "spawn_rate": 4, "mode": "open", "rate": 100}
        assert _call(ui + "/swarm", form) == 200
        deadline = time.monotonic() + 30
        rows: list = []
        while time.monotonic() < deadline and len(rows) < 8:
            time.sleep(1)
            with urllib.request.urlopen(ui + "/stats/requests", timeout=10) as response:
                tabs = {t["key"]: t["data"] for t in json.load(response)["extended_stats"]}
            rows = [r for r in tabs["triton"] if r["p95_ms"] != ""]
        assert len(rows) == 8 and {r["mode"] for r in rows} == {"open"}
        facts = {r["item"]: r["value"] for r in tabs["triton-run"]}
        assert facts["workers"] == 2 and facts["open loop"].startswith("100 req/s in total")
        time.sleep(3)
        _stop_test(ui, settle_s=3)
        _quit(proc)
    finally:
        proc.kill()
    run_dir = tmp_path / facts["run directory"]
    meta = run_json(run_dir)
    assert [w["state"] for w in meta["workers"].values()] == ["done", "done"]
    assert meta["request_count"] == len(records(run_dir)) > 0
    seconds = (meta["ended_ns"] - meta["started_ns"]) / 1e9
    assert meta["arrivals"]["scheduled"] / seconds == pytest.approx(100, rel=0.25)
