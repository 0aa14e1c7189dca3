"""``--shared-memory system`` on the session's real Triton: tensors stay off the wire.

Inputs written once into registered POSIX regions, requests that only name them, answers
written to shared memory with ``--output-shared-memory-size``; and nothing left behind, in
/dev/shm or registered on the server, after a run that ends or is interrupted. CUDA shared
memory needs a GPU: on this machine only its one-line refusal is tested.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import free_ports
from tests.locust_runs import error_lines, locust_cmd, records, run_json, run_locust
from tritonload.core.config import Target
from tritonload.core.errors import UsageError
from tritonload.server import EmbeddedTriton, Ports, demo_fleet
from tritonload.triton.admin import TritonAdmin
from tritonload.triton.shm import check_room

SHM = Path("/dev/shm")


def _ours() -> set[str]:
    return {p.name for p in SHM.glob("tritonload_*")}


def _registered(target: Target) -> list[str]:
    with TritonAdmin(target) as admin:
        return admin.system_shared_memory()


def _wait_for_load(proc: subprocess.Popen, run_dir: Path) -> None:
    deadline = time.monotonic() + 60
    while not (run_dir / "run.json").exists():  # written at test start
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1]
        time.sleep(0.1)
    time.sleep(2.0)  # let requests flow


def _run(target: Target, run_dir: Path, mix: str, *extra: str) -> subprocess.CompletedProcess:
    return run_locust("locustfiles/mixed_models.py", "-u", "2", "-r", "2", "-t", "4s",
                      "--host", f"{target.host}:{target.http_port}", "--mix", mix,
                      "--shared-memory", "system", "--run-dir", str(run_dir), *extra,
                      cwd=run_dir.parent)


def test_inputs_are_named_not_sent_over_both_protocols(target, tmp_path):
    before = _ours()
    run_dir = tmp_path / "inputs"
    proc = _run(target, run_dir, "image_classifier:1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    meta = run_json(run_dir)
    rows = records(run_dir)
    assert meta["error_counts"] == {} and len(rows) > 50
    assert set(rows["protocol"]) == {"grpc", "http"}
    # A 224×224×3 FP32 image is 602,112 bytes; a request now carries only the region's name.
    assert rows["bytes_sent"].max() < 1000
    assert rows["bytes_received"].min() > 4000  # the answers still come back in the response
    assert meta["shared_memory"]["kind"] == "system"
    assert meta["shared_memory"]["output_size"] is None and meta["shared_memory"]["regions"] >= 1
    assert _ours() == before and _registered(target) == []


def test_outputs_land_in_shared_memory(target, tmp_path):
    run_dir = tmp_path / "outputs"
    proc = _run(target, run_dir, "wide_ranker:1", "--output-shared-memory-size", "30000000")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = records(run_dir)
    assert run_json(run_dir)["error_counts"] == {} and len(rows) > 20
    assert rows["bytes_received"].max() < 1000  # not the 28,755,968-byte scores tensor
    entries = 8  # a generated payload's
    assert run_json(run_dir)["shared_memory"]["regions"] == entries + 1  # one output region
    assert _registered(target) == []


def test_a_region_larger_than_dev_shm_is_refused_before_it_is_made():
    # tmpfs takes pages only when written: a region too big would be made, then kill the
    # writer with SIGBUS. 1 PB is more than any /dev/shm.
    with pytest.raises(UsageError, match="MB free and a 1000000000 MB region is needed"):
        check_room(10**15)


def test_regions_are_unlinked_when_the_server_dies_mid_run(tmp_path):
    before = _ours()
    models = [m for m in demo_fleet() if m.name == "image_classifier"]
    server = EmbeddedTriton(models=models, ports=Ports(*free_ports(start=19300)))
    server.start()
    run_dir = tmp_path / "server-died"
    cmd = locust_cmd("locustfiles/mixed_models.py", "-u", "2", "-t", "60s", "--host",
                     f"127.0.0.1:{server.ports.http}", "--mix", "image_classifier:1",
                     "--shared-memory", "system", "--run-dir", str(run_dir))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path)
    try:
        _wait_for_load(proc, run_dir)
        assert _ours() - before
        server.stop()  # the server is gone: unregistering fails, unlinking must not
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    finally:
        proc.kill()
        server.stop()
    assert proc.returncode in (0, 1)  # 1: requests failed once the server was gone
    assert len(records(run_dir)) > 20
    assert _ours() == before


def test_interrupted_run_leaves_nothing_behind(target, tmp_path):
    before = _ours()
    run_dir = tmp_path / "interrupted"
    cmd = locust_cmd("locustfiles/mixed_models.py", "-u", "4", "-t", "60s", "--host",
                     f"{target.host}:{target.http_port}", "--mix", "image_classifier:1",
                     "--shared-memory", "system", "--run-dir", str(run_dir))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path)
    try:
        _wait_for_load(proc, run_dir)
        assert _ours() - before  # the regions exist while the load runs
        assert _registered(target)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert len(records(run_dir)) > 50
    assert _ours() == before and _registered(target) == []


@pytest.mark.parametrize(("extra", "says"), [
    (["--shared-memory", "cuda"], "needs a GPU"),
    (["--output-shared-memory-size", "1000"], "needs --shared-memory system"),
    (["--shared-memory", "system", "--output-shared-memory-size", "100"],
     "'scores' needs 28755968 bytes"),
    (["--shared-memory", "system", "--output-shared-memory-size", "x"], "not a whole number"),
])
def test_bad_shared_memory_options_exit_2_in_one_line(target, tmp_path, extra, says):
    proc = run_locust("locustfiles/mixed_models.py", "-u", "1", "-t", "2s", "--host",
                      f"{target.host}:{target.http_port}", "--mix", "wide_ranker:1",
                      "--run-dir", str(tmp_path / "run"), *extra, cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = error_lines(proc.stderr) or [ln for ln in proc.stderr.splitlines() if says in ln]
    assert len(lines) == 1 and says in lines[0], proc.stderr[-2000:]
    assert not (tmp_path / "run" / "requests").exists()


def test_a_remote_target_is_refused_before_any_request(tmp_path):
    # 192.0.2.1 is TEST-NET-1: never answered, and never sent to (refused before connecting).
    proc = run_locust("locustfiles/mixed_models.py", "-u", "1", "-t", "2s", "--host",
                      "192.0.2.1:8000", "--shared-memory", "system", cwd=tmp_path, timeout=60)
    assert proc.returncode == 2
    assert error_lines(proc.stderr) == [
        "tritonload: error: --shared-memory system: the server must be on this machine, and "
        "'192.0.2.1' is not a loopback address"], proc.stderr[-2000:]
