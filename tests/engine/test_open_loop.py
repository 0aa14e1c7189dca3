"""Open loop on a saturated server: latency from the scheduled time grows; closed loop hides it."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.conftest import free_ports
from tests.locust_runs import records, run_json, run_locust
from tritonload.server import EmbeddedTriton, Ports, demo_fleet

pytestmark = pytest.mark.integration
MATRIX = "tests/engine/locustfile_matrix.py"
MODEL = "recommender_nobatch"


@pytest.fixture(scope="module")
def fifty_rps_server():
    """One instance, 20 ms per request, no batching: capacity is 50 requests per second."""
    overrides = {"cost_base_us": 20000, "cost_per_item_us": 0, "instances": 1}
    fleet = [m for m in demo_fleet({MODEL: overrides}) if m.name == MODEL]
    with EmbeddedTriton(fleet, ports=Ports(*free_ports(start=18950))) as server:
        yield server


def _mean_latency_ms(rows: pd.DataFrame, start_s: float, end_s: float) -> float:
    t = (rows.intended_start_ns - rows.intended_start_ns.min()) / 1e9
    return rows.latency_us[(t >= start_s) & (t < end_s)].mean() / 1000


def test_open_loop_latency_grows_while_closed_loop_stays_flat(tmp_path, fifty_rps_server):
    host = fifty_rps_server.http_url
    open_dir, closed_dir = tmp_path / "open", tmp_path / "closed"
    # Closed loop first: the open run leaves a backlog the server works off afterwards.
    proc = run_locust(MATRIX, "GrpcUser", "-u", "4", "-r", "100", "-t", "6s", "--host", host,
                      "--mix", f"{MODEL}:1", "--mode", "sync", "--run-dir", str(closed_dir))
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = run_locust(MATRIX, "GrpcUser", "-u", "1", "-t", "6s", "--host", host, "--mix",
                      f"{MODEL}:1", "--mode", "open", "--rate", "80", "--arrival", "constant",
                      "--max-in-flight", "400", "--run-dir", str(open_dir))
    assert proc.returncode == 0, proc.stderr[-2000:]

    open_rows, closed_rows = records(open_dir), records(closed_dir)
    assert set(open_rows["mode"]) == {"open"}
    # Open loop: the backlog grows by ~30 requests/s, so the wait does too. (Requests sent in
    # the last seconds are still queued when the run ends, so compare the first half.)
    early, late = _mean_latency_ms(open_rows, 0, 0.5), _mean_latency_ms(open_rows, 2.5, 3.0)
    assert late > 3 * early, (early, late)
    assert (open_rows.latency_us >= open_rows.service_us).all()
    # Closed loop: 4 users on a 50 rps server just take turns; latency stays put.
    c_early, c_late = _mean_latency_ms(closed_rows, 1, 2), _mean_latency_ms(closed_rows, 4, 5)
    assert abs(c_late - c_early) < 0.3 * c_early, (c_early, c_late)
    meta = run_json(open_dir)
    assert meta["load"] == {"kind": "rate", "level": 80.0}
    arrivals = pd.read_parquet(open_dir / "arrivals.parquet")
    assert arrivals.scheduled.sum() == meta["arrivals"]["scheduled"] >= 400
    assert meta["arrivals"]["late"] == 0 or arrivals.late.sum() == meta["arrivals"]["late"]


def test_generator_reports_drops_instead_of_lowering_the_rate(tmp_path, fifty_rps_server):
    run_dir = tmp_path / "drops"
    proc = run_locust(MATRIX, "GrpcUser", "-u", "1", "-t", "5s", "--host",
                      fifty_rps_server.http_url, "--mix", f"{MODEL}:1", "--mode", "open",
                      "--rate", "200", "--max-in-flight", "4", "--run-dir", str(run_dir))
    assert proc.returncode == 0, proc.stderr[-2000:]
    meta = run_json(run_dir)
    totals = meta["arrivals"]
    duration_s = (meta["ended_ns"] - meta["started_ns"]) / 1e9
    assert totals["scheduled"] >= 0.9 * 200 * (duration_s - 0.5)  # the schedule kept its rate
    assert totals["dropped"] > 0 and totals["late"] > 0
    assert len(records(run_dir)) + totals["dropped"] <= totals["scheduled"]
