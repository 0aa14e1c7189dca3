"""Faults, summarised: a target that dies, comes back, hangs or resets connections mid-run.

The outage watch's rule is checked on counters first (no server); then real runs against a
real Triton that is killed and restarted mid-run, and through `fault_proxy.FaultProxy`,
which turns a healthy path to the same server into a hung or a resetting one.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import time
from dataclasses import replace

import numpy as np
import pytest
from tritonload.analysis.cli import write_report_for

from tests.conftest import free_ports
from tests.engine.fault_proxy import FaultProxy
from tests.locust_runs import locust_cmd, records, run_json
from tritonload.core.config import Target
from tritonload.core.errors import classify
from tritonload.core.numbers import Window, summarize
from tritonload.core.validity import judge, outage_overlap_s, run_validity
from tritonload.load.outages import OutageWatch
from tritonload.server import EmbeddedTriton, Ports, demo_fleet
from tritonload.triton.admin import TritonAdmin
from tritonload.triton.payloads import ModelInfo, generate_payload
from tritonload.wire.grpc import GrpcTransport
from tritonload.wire.http import HttpTransport

S = 1_000_000_000
UNREACHABLE = re.compile(r"target unreachable since (\d\d:\d\d:\d\d) \((.+)\)")
BACK = re.compile(r"target back at (\d\d:\d\d:\d\d)")


# -- the rule, on counters -----------------------------------------------------------------

def _feed(watch: OutageWatch, ticks: list[tuple[int, int]], t0: int = 0) -> None:
    """Ticks of (succeeded, failed) a second apart, as cumulative counters."""
    requests = failed = 0
    for i, (ok, bad) in enumerate(ticks, start=1):
        requests += ok + bad
        failed += bad
        watch.observe(t0 + i * S, requests, {"unavailable": failed} if failed else {},
                      "[Errno 111] Connection refused" if failed else "")


def test_two_seconds_of_failures_is_an_outage_and_a_success_ends_it(caplog):
    watch = OutageWatch(started_ns=0)
    with caplog.at_level(logging.WARNING, logger="tritonload.load.outages"):
        _feed(watch, [(100, 0), (0, 3000), (0, 3000), (0, 0), (0, 2000), (50, 10), (100, 0)])
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert UNREACHABLE.fullmatch(lines[0]).group(2) == \
        "unavailable: [Errno 111] Connection refused"
    assert BACK.match(lines[1]) and "unreachable for 5.0 s" in lines[1]
    (outage,) = watch.document(run_end_ns=10 * S)
    # From the tick before the first all-failed one, to the tick that saw a success; the
    # tick in which nothing completed neither ended it nor started another.
    assert (outage["start_ns"], outage["end_ns"], outage["open"]) == (1 * S, 6 * S, False)
    assert outage["kind"] == "unavailable" and outage["duration_s"] == 5.0


def test_an_outage_ends_when_its_first_success_completed():
    watch = OutageWatch(started_ns=0)
    _feed(watch, [(10, 0), (0, 10), (0, 10), (0, 10)])
    watch.observe(6 * S, 60, {"unavailable": 30}, first_ok_ns=int(4.3 * S))  # a slow tick
    (outage,) = watch.document(None)
    assert (outage["start_ns"], outage["end_ns"]) == (1 * S, int(4.3 * S))


def test_a_failing_second_between_successes_is_no_outage(caplog):
    watch = OutageWatch(started_ns=0)
    with caplog.at_level(logging.WARNING, logger="tritonload.load.outages"):
        _feed(watch, [(100, 0), (0, 500), (1, 400), (0, 500), (100, 0)])
    assert watch.document(None) == [] and not caplog.records


def test_an_outage_still_on_at_the_end_ends_with_the_run():
    watch = OutageWatch(started_ns=0)
    _feed(watch, [(10, 0), (0, 10), (0, 10), (0, 10)])
    (outage,) = watch.document(run_end_ns=4 * S)
    assert outage["open"] and outage["end_ns"] == 4 * S and outage["duration_s"] == 3.0


def test_an_outage_in_the_steady_window_makes_the_run_invalid():
    window = Window(10 * S, 40 * S, 0.0, "test", True)
    outages = [{"start_ns": 5 * S, "end_ns": 12 * S, "kind": "unavailable"},
               {"start_ns": 38 * S, "end_ns": None, "kind": "timeout"}]  # open: to the end
    assert outage_overlap_s(outages, window) == (4.0, "unavailable")
    assert outage_overlap_s([{"start_ns": 1 * S, "end_ns": 9 * S}], window) == (0.0, "")
    healthy = summarize(np.ones(1000), np.ones(1000, dtype=bool), 30.0)
    verdict = judge({"outages": outages}, window, None, healthy)
    assert not verdict.valid
    assert verdict.reasons == ("target unreachable for 4.0 s of the 30.0 s steady window "
                               "(unavailable)",)
    assert judge({"outages": []}, window, None, healthy).valid


# -- real runs ------------------------------------------------------------------------------

@pytest.fixture
def server(tmp_path):
    """A server of this test's own, since the tests kill it: recommender only."""
    server = EmbeddedTriton([m for m in demo_fleet() if m.name == "recommender"],
                            Ports(*free_ports(start=19900)), log_file=tmp_path / "triton.log")
    server.start()
    yield server
    server.stop()


def _start_run(tmp_path, http_port: int, grpc_port: int, seconds: int, *args: str
               ) -> subprocess.Popen:
    host = f"127.0.0.1:{http_port}"
    assert grpc_port == http_port + 1  # Triton's layout, which a bare host:port implies
    cmd = locust_cmd("locustfiles/mixed_models.py", "-u", "2", "-r", "2", "-t", f"{seconds}s",
                     "--host", host, "--mix", "recommender:1", "--run-dir",
                     str(tmp_path / "run"), *args)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path)


def _finish(proc: subprocess.Popen) -> str:
    try:
        _, stderr = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert proc.returncode in (0, 1), stderr[-2000:]  # 1: Locust saw failed requests
    assert "Traceback" not in stderr, stderr[-2000:]
    return stderr


@pytest.mark.integration
def test_a_server_killed_and_restarted_mid_run_is_one_outage(server, tmp_path):
    proc = _start_run(tmp_path, server.ports.http, server.ports.grpc, 10)
    time.sleep(3)
    os.killpg(server.pid, signal.SIGKILL)  # as a crash would: the server and its stubs
    server.stop()  # only forgets the dead process
    time.sleep(3)
    server.start()
    stderr = _finish(proc)
    assert len(UNREACHABLE.findall(stderr)) == 1 and len(BACK.findall(stderr)) == 1, stderr
    reason = UNREACHABLE.search(stderr).group(2)
    assert reason.startswith("unavailable"), reason
    meta = run_json(tmp_path / "run")
    (outage,) = meta["outages"]
    assert not outage["open"] and 2.0 <= outage["duration_s"] <= 8.0, outage
    frame = records(tmp_path / "run")
    assert len(frame) == meta["request_count"]  # every record kept
    after = frame[frame["start_ns"] > outage["end_ns"]]
    assert after["ok"].any() and set(after["protocol"]) == {"grpc", "http"}  # both came back
    assert any("unreachable" in reason for reason in run_validity(tmp_path / "run").reasons)
    # The report's timeline: the outage's row, and its chart
    analysis, paths = write_report_for([tmp_path / "run"], tmp_path / "report", n_boot=50)
    assert len(analysis.outages) == 1 and analysis.timeline["failed"].sum() > 0
    gap = analysis.timeline[(analysis.timeline["t_s"] > analysis.outages["start_s"][0] + 1) &
                            (analysis.timeline["t_s"] < analysis.outages["end_s"][0] - 1)]
    assert (gap["ok"] == 0).all()  # no success inside it
    assert "## Outages" in paths["md"].read_text() or "Outages" in paths["md"].read_text()
    assert "alt='outage_timeline'" in paths["html"].read_text()


@pytest.mark.integration
def test_error_backoff_spares_a_dead_target(server, tmp_path):
    proc = _start_run(tmp_path, server.ports.http, server.ports.grpc, 9, "--error-backoff",
                      "0.1")
    time.sleep(2.5)
    os.killpg(server.pid, signal.SIGKILL)
    stderr = _finish(proc)
    (outage,) = run_json(tmp_path / "run")["outages"]
    assert outage["open"], outage
    frame = records(tmp_path / "run")
    failed = int((~frame["ok"]).sum())
    # 2 users, backing off 0.1, 0.2, 0.4 … s: about 7 failures each in 6 s, against
    # thousands per second without the backoff.
    assert 0 < failed < 60, (failed, stderr[-1000:])


def _proxies(server: EmbeddedTriton):
    http_port, grpc_port = free_ports(2, start=19950)  # consecutive, as Triton's are
    return (FaultProxy(http_port, server.ports.http).start(),
            FaultProxy(grpc_port, server.ports.grpc).start())


@pytest.mark.integration
@pytest.mark.parametrize(("mode", "kind"), [("blackhole", "timeout"), ("reset", "unavailable")])
def test_a_target_that_hangs_or_resets_mid_run_is_an_outage(server, tmp_path, mode, kind):
    proxies = _proxies(server)
    try:
        proc = _start_run(tmp_path, proxies[0].port, proxies[1].port, 10,
                          "--request-timeout", "0.5")
        time.sleep(3)
        for proxy in proxies:
            proxy.mode = mode
        time.sleep(4)
        for proxy in proxies:
            proxy.mode = "forward"
        stderr = _finish(proc)
    finally:
        for proxy in proxies:
            proxy.stop()
    assert UNREACHABLE.search(stderr).group(2).startswith(kind), stderr[-2000:]
    (outage,) = run_json(tmp_path / "run")["outages"]
    assert outage["kind"] == kind
    frame = records(tmp_path / "run")
    assert set(frame.loc[~frame["ok"], "error_kind"]) <= {kind, "unavailable", "timeout"}


@pytest.mark.integration
@pytest.mark.parametrize("transport_class", [GrpcTransport, HttpTransport])
@pytest.mark.parametrize(("mode", "kind"), [("blackhole", "timeout"), ("reset", "unavailable")])
def test_each_call_fails_classified_within_its_deadline(server, transport_class, mode, kind):
    """A hung or resetting server: every call ends within its timeout, classified."""
    proxies = _proxies(server)
    target = Target("127.0.0.1", proxies[0].port, proxies[1].port, timeout_s=0.5)
    with TritonAdmin(replace(target, timeout_s=5)) as admin:
        info = ModelInfo.from_served(admin.metadata("recommender"), admin.config("recommender"))
    transport = transport_class(target)
    try:
        (prepared,) = transport.prepare(generate_payload(info, count=1))
        transport.send(prepared)  # a healthy connection first, then the fault
        for proxy in proxies:
            proxy.mode = mode
        for _ in range(3):
            started = time.monotonic()
            with pytest.raises(Exception) as caught:
                transport.send(prepared)
            assert time.monotonic() - started < 1.5
            assert classify(caught.value) == kind, caught.value
        for proxy in proxies:
            proxy.mode = "forward"
        deadline = time.monotonic() + 5
        while True:  # back to health: a call succeeds again
            try:
                transport.send(prepared)
                break
            except Exception:
                assert time.monotonic() < deadline
    finally:
        transport.close()
        for proxy in proxies:
            proxy.stop()


