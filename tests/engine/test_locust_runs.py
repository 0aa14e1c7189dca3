"""Headless Locust runs against the real embedded server: protocols, modes, mix, records."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.conftest import free_ports
from tests.locust_runs import (
    error_lines,
    locust_request_count,
    records,
    run_json,
    run_locust,
)

pytestmark = pytest.mark.integration
MATRIX = "tests/engine/locustfile_matrix.py"


def host_of(target) -> str:
    return f"{target.host}:{target.http_port}"  # HTTP there, gRPC on the next port


@pytest.mark.parametrize("protocol", ["grpc", "http"])
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_protocol_and_mode(tmp_path, target, protocol, mode):
    run_dir = tmp_path / "run"
    user = "GrpcUser" if protocol == "grpc" else "HttpUser"
    proc = run_locust(MATRIX, user, "-u", "2", "-r", "10", "-t", "4s", "--host", host_of(target),
                      "--mode", mode, "--max-in-flight", "4", "--run-dir", str(run_dir))
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = records(run_dir)
    assert len(rows) > 100
    assert set(rows.protocol) == {protocol} and set(rows["mode"]) == {mode}
    assert rows.ok.all(), rows[~rows.ok].error_kind.value_counts()
    assert (rows.latency_us > 0).all() and (rows.bytes_received > 0).all()
    assert len(rows) == locust_request_count(run_dir) == run_json(run_dir)["request_count"]
    meta = run_json(run_dir)
    assert meta["format_version"] == 1 and meta["mode"] == mode
    assert meta["load"]["level"] == (2 if mode == "sync" else 8)
    assert meta["models"]["recommender"]["dynamic_batching"]["max_queue_delay_microseconds"]
    # Server-side deltas add up to what was sent: every recorded request, plus at most the
    # requests still in flight when the run stopped (sent, but never completed client-side).
    stats = pd.read_parquet(run_dir / "server_stats.parquet")
    served = int(stats[stats.model == "recommender"].success_count.sum())
    assert len(rows) <= served <= len(rows) + meta["load"]["level"]
    batches = pd.read_parquet(run_dir / "server_batches.parquet")
    assert (batches.batch_size * batches.executions).sum() == stats.inference_count.sum()
    # The live P95 (HDR histogram, 3 significant digits) agrees to 0.1% with the exact P95 of
    # the requests it had seen: live.json was written when the first live["requests"]
    # records (in recording order) were in. Same rank rule as hdrh: the round(95 n / 100)-th
    # smallest of the whole-µs latencies; HDR answers the top of that value's bucket, which
    # is at most 1/1024 above it.
    live = json.loads((run_dir / "live.json").read_text())
    seen = _in_recording_order(run_dir).iloc[:live["requests"]]
    assert 0 < live["requests"] <= len(rows)
    seen_us = np.sort(np.floor(seen.latency_us[seen.ok & (seen.model == "recommender")]))
    exact_ms = seen_us[max(int(95 * len(seen_us) / 100 + 0.5), 1) - 1] / 1000
    live_ms = live["p95_ms_by_model"]["recommender"]
    assert exact_ms <= live_ms <= exact_ms * (1 + 1 / 1024) + 1e-9, (live_ms, exact_ms)


def _in_recording_order(run_dir) -> pd.DataFrame:
    parts = sorted((run_dir / "requests").glob("part-*.parquet"))
    return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)


def test_mixed_models_mix_shares_and_both_protocols(tmp_path, target):
    run_dir = tmp_path / "mixed"
    proc = run_locust("locustfiles/mixed_models.py", "-u", "8", "-r", "100", "-t", "8s",
                      "--host", host_of(target), "--run-dir", str(run_dir))
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = records(run_dir)
    assert len(rows) >= 2000
    assert set(rows.protocol) == {"grpc", "http"}
    configured = run_json(run_dir)["mix"]
    shares = rows.model.value_counts(normalize=True)
    for model, share in configured.items():
        assert abs(shares[model] - share) < 0.05, (model, shares[model], share)
    assert run_json(run_dir)["achieved_mix"] == pytest.approx(shares.to_dict())
    assert len(rows) == locust_request_count(run_dir)


def test_pinned_grpc_url_drops_http_users(tmp_path, target):
    run_dir = tmp_path / "pinned"
    proc = run_locust("locustfiles/mixed_models.py", "-u", "2", "-t", "3s",
                      "--host", f"grpc://{target.url('grpc')}", "--run-dir", str(run_dir))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert set(records(run_dir).protocol) == {"grpc"}


def bad_payload(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"data": [{"user_features": {"content": [0.0] * 63, "shape": [63]},
                                          "item_features": [0.0] * 64}]}))
    return path


@pytest.mark.parametrize("extra, expected", [
    (["--payload", "recommender=BAD"],
     "bad.json: entry 0, input 'user_features': shape [63] does not match the model's [64] "
     "(dims without the batch dim)"),
    (["--mix", "no_such_model:1"], "model 'no_such_model' is not available"),
    (["--payload", "recommender=/does/not/exist.json"], "does not exist"),
    (["--mix", "recommender:x"], "weight is not a number"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, target, extra, expected):
    extra = [e.replace("BAD", str(bad_payload(tmp_path))) for e in extra]
    proc = run_locust(MATRIX, "GrpcUser", "-u", "1", "-t", "3s", "--host", host_of(target),
                      "--run-dir", str(tmp_path / "r"), *extra, timeout=60)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    (line,) = error_lines(proc.stderr)
    assert expected in line
    assert not (tmp_path / "r").exists()  # nothing started, nothing half-written


def test_unreachable_server_is_one_line(tmp_path):
    port = free_ports(2)[0]
    proc = run_locust(MATRIX, "GrpcUser", "-u", "1", "-t", "3s", "--host", f"127.0.0.1:{port}",
                      timeout=60)
    assert proc.returncode == 2
    (line,) = error_lines(proc.stderr)
    assert "cannot reach Triton at" in line and "Traceback" not in proc.stderr
