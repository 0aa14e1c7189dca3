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
    # The schedule, fixed by construction: one user at 80/s, constant spacing, so intended
    # sends are exactly 12.5 ms apart whatever the server or the generator did. Every
    # recorded request sits on that grid, once...
    gap_ns = 12_500_000
    intended = open_rows.intended_start_ns.sort_values().to_numpy()
    assert ((intended - intended[0]) % gap_ns == 0).all()
    assert len(set(intended)) == len(intended)
    # ...and each whole second in between holds exactly 80 scheduled sends (1 s / 12.5 ms).
    arrivals = pd.read_parquet(open_dir / "arrivals.parquet")
    assert len(arrivals) >= 5 and (arrivals.t_end_ns - arrivals.t_start_ns == 1e9).all()
    assert list(arrivals.scheduled[1:-1]) == [80] * (len(arrivals) - 2)
    totals = meta["arrivals"]
    assert totals["dropped"] == 0 and arrivals.dropped.sum() == 0  # 400 slots never ran out
    # Nothing scheduled goes unaccounted for: recorded, or still queued when the run stopped
    # (the backlog, ~30/s for 6 s, is well under the 400 slots).
    backlog = totals["scheduled"] - len(open_rows)
    assert 0 <= backlog <= 400, backlog
    assert arrivals.scheduled.sum() == totals["scheduled"]  # the file and run.json agree
    assert arrivals.late.sum() == totals["late"] <= totals["scheduled"]


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
    # Every scheduled send is dropped or recorded, but for those cut off when the run stopped:
    # at most the 4 in flight, plus the one waiting for a slot.
    unaccounted = totals["scheduled"] - totals["dropped"] - len(records(run_dir))
    assert 0 <= unaccounted <= 4 + 1, unaccounted
