"""The Triton tabs' rows (pure functions), and the 3-significant-digit Locust buckets."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tritonload.load.exact_stats import bucket_response_time
from tritonload.load.recorder import new_histogram
from tritonload.load.webui import error_kind, model_rows, run_rows, server_columns


@pytest.mark.parametrize(("ms", "bucket"), [
    (4.7312, 4.73), (0.45678, 0.457), (1234.5, 1230.0), (12.0, 12.0), (99.96, 100.0),
    (0.0, 0), (-1.0, 0)])
def test_buckets_keep_three_significant_digits(ms, bucket):
    assert bucket_response_time(ms) == bucket


def test_error_kinds_come_from_the_request_failed_message():
    assert error_kind("RequestFailed('timeout: deadline exceeded')") == "timeout"
    assert error_kind('RequestFailed("unavailable: connection refused")') == "unavailable"
    assert error_kind("ConnectionError('x')") == "other"


def _interval() -> dict:
    counters = {"queue_count": 10, "queue_ns": 25_000_000, "compute_input_count": 10,
                "compute_input_ns": 1_000_000, "compute_infer_count": 10,
                "compute_infer_ns": 38_000_000, "compute_output_count": 10,
                "compute_output_ns": 2_000_000, "inference_count": 10, "execution_count": 4,
                "success_count": 10}
    return {"counters": counters, "batches": {1: (2, 0), 4: (2, 0)}}


def test_server_columns_are_means_per_request_and_the_batch_sizes():
    row = server_columns(_interval())
    assert row["queue_ms"] == 2.5 and row["compute_infer_ms"] == 3.8
    assert row["compute_input_ms"] == 0.1 and row["compute_output_ms"] == 0.2
    assert row["mean_batch"] == 2.5 and row["batches"] == "1×2, 4×2"
    assert set(server_columns(None).values()) == {""}  # no interval yet


def test_model_rows_join_locust_hdr_triton_and_settings():
    histogram = new_histogram()
    for us in range(1000, 2000):  # 1.000 .. 1.999 ms
        histogram.record_value(us)
    entries = {("recommender", "grpc"): SimpleNamespace(current_rps=123.456, num_requests=300),
               ("text_classifier", "grpc"): SimpleNamespace(current_rps=50.0,
                                                            num_requests=100)}
    rows = model_rows(
        entries, {("recommender", "grpc"): histogram},
        {("recommender", "grpc"): {"timeout": 2, "unavailable": 1}},
        {"recommender": _interval()},
        {"grpc": {"mode": "async", "in_flight": 4,
                  "shares": {"recommender": 0.5, "text_classifier": 0.5}}})
    first, second = rows
    assert (first["model"], first["protocol"], first["rps"]) == ("recommender", "grpc", 123.5)
    assert first["p50_ms"] == pytest.approx(1.5, abs=0.002)
    assert first["p99_ms"] == pytest.approx(1.99, abs=0.002)
    assert first["errors"] == "timeout 2, unavailable 1"
    assert first["mix"] == "50% → 75%"  # 300 of the protocol's 400 requests
    assert (first["mode"], first["in_flight"], first["mean_batch"]) == ("async", 4, 2.5)
    assert second["p95_ms"] == "" and second["errors"] == "0" and second["queue_ms"] == ""


def test_run_rows_say_where_the_run_and_its_report_are(tmp_path):
    running = run_rows(tmp_path, True, {"scheduled": 200, "late": 2, "dropped": 0},
                       "200 req/s in total, poisson arrivals", 2)
    facts = {r["item"]: r["value"] for r in running}
    assert facts["run directory"] == str(tmp_path) and facts["workers"] == 2
    assert facts["open-loop sends"] == "200 scheduled, 2 late (1.0%), 0 dropped (0.0%)"
    assert "still going" in facts["report"]
    stopped = {r["item"]: r["value"] for r in run_rows(tmp_path, False, None, None, 0)}
    assert stopped["report"].startswith("/triton/report") and "workers" not in stopped


def test_a_server_without_statistics_says_so_in_every_server_cell(tmp_path):
    assert set(server_columns(None, served=False).values()) == {"not served by this server"}
    rows = {r["item"]: r["value"]
            for r in run_rows(tmp_path, True, None, None, 0, unserved=["statistics"])}
    assert rows["statistics extension"] == ("not served by this server: no server-side "
                                            "breakdown for this run")
