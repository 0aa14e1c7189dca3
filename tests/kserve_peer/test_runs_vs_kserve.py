"""`tritonload run` and `report` against a real non-Triton KServe v2 server (issue 17).

kserve 0.21 serves the core protocol only: no model configuration, statistics, repository
index or shared memory. The runs must go on with one line per missing extension, infer each
model's batch dimension from its metadata, and record what was missing in run.json; the
report must say "not served by this server" where server-side data would be.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pyarrow.parquet as pq
import pytest

from tests.conftest import free_ports
from tests.locust_runs import REPO, error_lines

pytestmark = pytest.mark.integration

LOCUSTFILE = "locustfiles/mixed_models.py"
MISSING = ("model configuration", "statistics", "repository index", "system shared memory")


def _run(tmp_path, url: str, *args: str, name: str = "run") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tritonload.cli", "run", LOCUSTFILE, "--url", url,
         "--run-dir", str(tmp_path / name), *args],
        capture_output=True, text=True, timeout=180, cwd=REPO)


def _ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def mixed_run(kserve_peer, tmp_path_factory):
    """One run over both protocols, sync, recommender and fixed_scorer."""
    tmp = tmp_path_factory.mktemp("kserve-run")
    proc = _run(tmp, kserve_peer.http_url,  # host:port: HTTP there, gRPC on the next port
                "--mix", "recommender:1,fixed_scorer:1", "-u", "2", "-t", "4s")
    _ok(proc)
    return proc, tmp / "run"


def test_a_run_says_each_missing_extension_once_and_goes_on(mixed_run):
    proc, run_dir = mixed_run
    out = proc.stdout
    for name in MISSING:
        lines = [ln for ln in out.splitlines() if f"{name} extension not served by" in ln]
        assert len(lines) == 1, out
    assert "statistics extension not served by" in out and \
        "no server-side breakdown for this run" in out
    assert ("recommender takes a batch dimension, inferred from its metadata shapes "
            "(--batch-dim yes|no overrides); requests carry batch 1") in out
    assert "fixed_scorer has no batch dimension, inferred from its metadata shapes" in out
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["extensions"] == {"model_configuration": False, "statistics": False,
                                  "repository_index": False, "system_shared_memory": False}
    assert meta["models"]["recommender"]["max_batch_size"] == 1
    assert meta["models"]["fixed_scorer"]["max_batch_size"] == 0
    assert {m["source"] for m in meta["models"].values()} == {"metadata"}
    assert meta["error_counts"] == {}
    assert pq.read_table(run_dir / "server_stats.parquet").num_rows == 0  # none served


def test_both_protocols_and_both_models_are_answered(mixed_run):
    _, run_dir = mixed_run
    records = pq.read_table(run_dir / "requests").to_pandas()
    ok = records[records["error_kind"] == ""]
    assert len(ok) == len(records) > 100
    counts = ok.groupby(["model", "protocol"], observed=True).size()
    assert set(counts.index) == {(m, p) for m in ("recommender", "fixed_scorer")
                                 for p in ("grpc", "http")}, counts


def test_the_report_says_what_is_not_served(mixed_run, tmp_path):
    _, run_dir = mixed_run
    proc = subprocess.run([sys.executable, "-m", "tritonload.cli", "report", str(run_dir),
                           "-o", str(tmp_path / "report")],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    _ok(proc)
    text = (tmp_path / "report" / "report.md").read_text()
    for name in ("Statistics", "Model configuration", "Repository index"):
        assert f"{name}: not served by this server" in text
    breakdown = text.split("## Where the time goes", 1)[1]
    assert "Statistics: not served by this server" in breakdown.split("\n## ", 1)[0]
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    assert sorted(next(iter(data["unserved"].values()))) == [
        "model_configuration", "repository_index", "statistics", "system_shared_memory"]


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_async_users_over_each_protocol(kserve_peer, tmp_path, scheme):
    url = kserve_peer.http_url if scheme == "http" else kserve_peer.grpc_url
    proc = _run(tmp_path, f"{scheme}://{url}", "--mix", "recommender:1", "--mode", "async",
                "--max-in-flight", "4", "-u", "1", "-t", "3s")
    _ok(proc)
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["protocols"] == [scheme] and meta["mode"] == "async"
    assert meta["request_count"] > 50 and meta["error_counts"] == {}


def test_batch_dim_no_overrides_the_inference(kserve_peer, tmp_path):
    proc = _run(tmp_path, f"http://{kserve_peer.http_url}", "--mix", "recommender:1",
                "--batch-dim", "no", "--shape", "recommender.user_features=3,64",
                "--shape", "recommender.item_features=3,64", "-u", "1", "-t", "2s")
    _ok(proc)
    assert "recommender has no batch dimension, given by --batch-dim" in proc.stdout
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["models"]["recommender"]["max_batch_size"] == 0
    assert meta["error_counts"] == {}  # [3, 64] is a shape the metadata's [-1, 64] takes


def test_a_wrong_model_is_said_by_the_metadata_call(kserve_peer, tmp_path):
    proc = _run(tmp_path, f"http://{kserve_peer.http_url}", "--mix", "nope:1", "-u", "1",
                "-t", "2s")
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert error_lines(proc.stderr) == [
        f"tritonload: error: model 'nope' is not available on http://{kserve_peer.http_url} "
        "([404] Model with name nope does not exist.); the server does not list its models "
        "(no repository index)"]
    assert "Traceback" not in proc.stderr


def test_shared_memory_without_the_extension_is_one_line(kserve_peer, tmp_path):
    proc = _run(tmp_path, f"http://{kserve_peer.http_url}", "--mix", "recommender:1",
                "--shared-memory", "system", "-u", "1", "-t", "2s")
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    (line,) = error_lines(proc.stderr)
    assert "does not serve the system shared-memory extension" in line


def test_the_web_ui_tabs_say_not_served_by_this_server(kserve_peer, tmp_path):
    """A real Locust process with its web UI, against the peer: the Triton tab's server cells
    and the run tab say what the server does not serve, instead of staying empty."""
    port = free_ports(1, start=19400)[0]
    ui = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", str(REPO / LOCUSTFILE), "HttpMixedModels",
         "--host", f"http://{kserve_peer.http_url}", "--mix", "recommender:1",
         "--web-host", "127.0.0.1", "--web-port", str(port), "--run-dir", str(tmp_path / "ui"),
         "--loglevel", "WARNING"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        _wait_for(ui + "/")
        body = urllib.parse.urlencode({"user_count": 1, "spawn_rate": 1}).encode()
        with urllib.request.urlopen(ui + "/swarm", data=body, timeout=10) as answer:
            assert answer.status == 200
        time.sleep(3)
        with urllib.request.urlopen(ui + "/stats/requests", timeout=10) as answer:
            tabs = {t["key"]: t["data"] for t in json.load(answer)["extended_stats"]}
        with urllib.request.urlopen(ui + "/stop", data=b"", timeout=10):
            pass
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    (row,) = [r for r in tabs["triton"] if r["model"] == "recommender"]
    assert int(row["requests"]) > 0
    for cell in ("queue_ms", "compute_infer_ms", "mean_batch", "batches"):
        assert row[cell] == "not served by this server", row
    run = {r["item"]: r["value"] for r in tabs["triton-run"]}
    assert run["statistics extension"].startswith("not served by this server")
    assert "statistics extension not served by" in stderr  # the pre-flight's line


def _wait_for(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=5).close()
            return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{url} never answered")


def test_a_capacity_search_runs_and_says_each_missing_extension_once(kserve_peer, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "tritonload.cli", "capacity", "--url", kserve_peer.http_url,
         "--models", "recommender", "--protocols", "http", "--slo-p95-ms", "50",
         "--start-rps", "100", "--max-rps", "200", "--probe-window", "2", "--probe-warmup",
         "1", "--budget", "60s", "-o", str(tmp_path / "cap")],
        capture_output=True, text=True, timeout=180, cwd=REPO)
    _ok(proc)
    assert proc.stdout.count("statistics extension not served by") == 1, proc.stdout
    search = json.loads((tmp_path / "cap" / "recommender-http" / "search.json").read_text())
    probes = search["knee"]["probes"]
    assert len(probes) >= 2 and search["knee"]["status"] == "above range"
    assert all(p["p95_us"] < 50_000 and p["error_rate"] == 0 and p["trusted"] for p in probes)
