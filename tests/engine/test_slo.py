"""SLO gates: parsing, judging exact percentiles, and exit codes 0 / 2 / 3 end to end."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from tests.locust_runs import REPO, error_lines, run_locust
from tritonload.core.errors import UsageError
from tritonload.core.numbers import summarize
from tritonload.core.slo import Slo, evaluate, parse_slo, parse_slos


@pytest.mark.parametrize("text, slo", [
    ("p95=50ms", Slo("p95", 50.0)),
    ("p99.9<=1.5s", Slo("p99.9", 1500.0)),
    ("p50=800us", Slo("p50", 0.8)),
    ("error_rate=0.5%", Slo("error_rate", 0.005)),
    ("error_rate=0.01", Slo("error_rate", 0.01)),
    ("rps=200", Slo("rps", 200.0)),
])
def test_parse(text, slo):
    assert parse_slo(text) == slo


@pytest.mark.parametrize("text", ["p95", "p95=fast", "p95=50", "p100=1ms", "error_rate=5ms",
                                  "error_rate=150%", "latency=3ms"])
def test_malformed_slo_is_one_line(text):
    with pytest.raises(UsageError, match="bad SLO"):
        parse_slo(text)


def test_evaluate_uses_exact_percentiles_and_all_requests_for_errors():
    rng = np.random.default_rng(3)
    latencies = rng.lognormal(np.log(10_000), 0.5, 5000)
    ok = np.arange(5000) % 100 != 0
    p95 = np.percentile(latencies[ok], 95) / 1000
    numbers = summarize(latencies, ok, duration_s=10.0)
    verdicts = evaluate(parse_slos(["p95=1s", "error_rate=0.5%"], min_rps=400.0), numbers)
    assert verdicts[0].measured == p95 and verdicts[0].ok
    assert verdicts[1].measured == 0.01 and not verdicts[1].ok
    assert verdicts[2].measured == 4950 / 10 and verdicts[2].ok


def test_an_empty_window_breaches_every_objective():
    verdicts = evaluate(parse_slos(["p95=1s", "error_rate=50%"], min_rps=1.0),
                        summarize(np.array([]), np.array([], dtype=bool), duration_s=5.0))
    assert [v.ok for v in verdicts] == [False, False, False]


def _tritonload(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tritonload.cli", *args], capture_output=True,
                          text=True, timeout=180, cwd=REPO)


@pytest.mark.integration
@pytest.mark.parametrize("slos, code", [
    (["--slo", "p95=10s", "--slo", "error_rate=1%", "--min-rps", "1"], 0),
    (["--slo", "p95=100us"], 3),
    (["--slo", "p95=fast"], 2),
])
def test_run_exit_codes(tmp_path, target, slos, code):
    proc = _tritonload("run", "tests/engine/locustfile_matrix.py", "--user-class", "HttpUser",
                       "-u", "2", "-t", "3s", "--url", target.as_url(),
                       "--run-dir", str(tmp_path / "run"), *slos)
    assert proc.returncode == code, proc.stdout[-2000:] + proc.stderr[-2000:]
    if code == 2:
        assert error_lines(proc.stderr) == ["tritonload: error: bad SLO 'p95=fast': expected e.g. "
                                            "p95=50ms, p99=120ms, error_rate=0.5%, ttft=200ms, "
                                            "itl=30ms"]
    else:
        assert "SLO p95" in proc.stdout and ("BREACH" in proc.stdout) == (code == 3)


@pytest.mark.integration
def test_plain_locust_gate_exits_3_on_breach(tmp_path, target):
    proc = run_locust("tests/engine/locustfile_matrix.py", "GrpcUser", "-u", "1", "-t", "3s",
                      "--host", target.as_url(), "--slo", "p99=50us",
                      "--run-dir", str(tmp_path / "run"))
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "BREACH" in proc.stderr


@pytest.mark.integration
def test_run_reports_open_loop_schedule_keeping(tmp_path, target):
    proc = _tritonload("run", "tests/engine/locustfile_matrix.py", "--user-class", "HttpUser",
                       "-u", "1", "-t", "3s", "--url", target.as_url(), "--mode", "open",
                       "--rate", "50", "--mix", "recommender:1",
                       "--run-dir", str(tmp_path / "run"))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "open loop: " in proc.stdout and " sends scheduled, " in proc.stdout
    assert "0 dropped (0.0%)" in proc.stdout  # 50 req/s is far below this server's capacity


@pytest.mark.integration
def test_gate_judges_the_reports_window_and_numbers(tmp_path, target):
    """`run --slo ... --report ...`: the gate's P95 and req/s are the report's, to the µs.

    A 5 s run drops its first 0.5 s (the report's warm-up rule) and keeps 4 whole seconds;
    before one definition of the numbers, the gate judged the whole run.
    """
    report = tmp_path / "report"
    proc = _tritonload("run", "tests/engine/locustfile_matrix.py", "--user-class", "GrpcUser",
                       "--mix", "recommender:1", "-u", "2", "-t", "5s", "--url", target.as_url(),
                       "--run-dir", str(tmp_path / "run"), "--slo", "p95=10s",
                       "--min-rps", "1", "--report", str(report))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    window = re.search(r"steady window: (\d+\.\d)–(\d+\.\d) s of the run", proc.stdout)
    assert window and float(window[2]) - float(window[1]) == 4.0, proc.stdout
    p95 = float(re.search(r"SLO p95 .* measured (\d+\.\d{3}) ms", proc.stdout)[1])
    rps = float(re.search(r"SLO throughput .* measured (\d+\.\d) req/s", proc.stdout)[1])
    groups = json.loads((report / "report.json").read_text())["groups"]
    assert len(groups) == 1  # one model, one protocol, one mode
    assert p95 == round(groups[0]["p95_us"] / 1000, 3)
    assert rps == round(groups[0]["throughput_rps"], 1)
    assert groups[0]["duration_s"] == 4.0
    assert json.loads((tmp_path / "run" / "run.json").read_text())["target"]["embedded"] is False
