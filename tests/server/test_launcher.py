"""Starting and stopping the embedded server: clean exits and one-line failures."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest

from tests.conftest import free_ports
from tritonload.core.errors import ServerError
from tritonload.server import EmbeddedTriton, ModelSpec, Ports, TensorSpec

pytestmark = pytest.mark.integration
TINY = ModelSpec(name="tiny", function="recommender",
                 inputs=(TensorSpec("user_features", "FP32", (64,)),
                         TensorSpec("item_features", "FP32", (64,))),
                 outputs=(TensorSpec("score", "FP32", (1,)),), max_batch_size=8)


def _descendants(pid: int) -> list[int]:
    return [p.pid for p in psutil.Process(pid).children(recursive=True)]


def _gone(pids: list[int], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in pids):
            return True
        time.sleep(0.1)
    return False


def test_stop_leaves_no_child_processes():
    server = EmbeddedTriton(models=[TINY, TINY.nobatch_twin()], ports=Ports(*free_ports()))
    server.start()
    pids = [server.pid, *_descendants(server.pid)]
    assert len(pids) == 3  # tritonserver + one stub per model
    server.stop()
    assert _gone(pids)
    server.stop()  # idempotent


def test_busy_port_is_one_clear_error():
    ports = Ports(*free_ports())
    with EmbeddedTriton(models=[TINY], ports=ports):
        with pytest.raises(ServerError, match=f"port {ports.http} \\(http\\).*busy"):
            EmbeddedTriton(models=[TINY], ports=ports).start()


def test_failed_model_load_is_reported():
    broken = ModelSpec(name="broken", function="no_such_function", inputs=TINY.inputs,
                       outputs=TINY.outputs, max_batch_size=8)
    expected = "model .broken. failed to load: Internal: KeyError: .no_such_function."
    with pytest.raises(ServerError, match=expected):
        EmbeddedTriton(models=[broken], ports=Ports(*free_ports())).start()


def test_readiness_timeout_is_reported_and_cleans_up():
    server = EmbeddedTriton(models=[TINY], ports=Ports(*free_ports()), ready_timeout_s=0.2)
    with pytest.raises(ServerError, match="not ready after"):
        server.start()
    assert not server.running()


def _default_sigint() -> None:
    """In the child: SIGINT as Python expects it. A suite started in the background by a
    shell without job control (``make test &``) ignores SIGINT, the child inherits that, and
    Python then never raises KeyboardInterrupt (the SIGINT case hung)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _serve(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tritonload.cli", "serve", "--models", "recommender", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        preexec_fn=_default_sigint,
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_command_stops_cleanly_on_signal(sig):
    """The signal comes once `serve` says it is ready (a fixed sleep after the models' stubs
    appeared raced the readiness check on a loaded machine), and the stop is prompt."""
    http, grpc, metrics = free_ports()
    proc = _serve("--http-port", str(http), "--grpc-port", str(grpc),
                  "--metrics-port", str(metrics))
    lines: list[str] = []

    def read_stdout() -> None:
        for line in proc.stdout:
            lines.append(line)

    reader = threading.Thread(target=read_stdout, daemon=True)
    reader.start()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not any("Ctrl-C to stop" in line for line in lines):
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.2)
    assert any("Ctrl-C to stop" in line for line in lines), "serve did not become ready"
    (server,) = [p for p in psutil.Process(proc.pid).children() if p.name() == "tritonserver"]
    pids = [server.pid, *_descendants(server.pid)]
    assert len(pids) >= 3  # the server and the two recommender instances' stubs
    os.kill(proc.pid, sig)
    sent = time.monotonic()
    try:
        proc.wait(timeout=60)
    finally:
        proc.kill()
    reader.join(5)
    err = proc.stderr.read()
    assert time.monotonic() - sent < 30, err
    assert proc.returncode == 0, err
    out = "".join(lines)
    assert "Triton ready" in out and "recommender" in out
    assert _gone(pids)


def test_serve_command_unknown_model_is_one_line():
    proc = _serve("--set", "nope.instances=2")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    # The whole demo fleet, in its order, each batching model followed by its twin, then
    # the ensemble's own step and the ensemble, then the generator.
    known = ", ".join([f"{m}, {m}_nobatch" for m in (
        "text_classifier", "image_classifier", "recommender", "wide_ranker", "narrow_ranker")]
        + ["preprocess", "image_pipeline", "text_generator"])
    assert err.strip().splitlines() == [
        f"tritonload: error: unknown model 'nope'; known models: {known}"]
    assert "Traceback" not in err
