"""What a server serves beyond the core protocol: the pure parts of `tritonload.triton.served`
and of `tritonload.triton.admin`'s answer classification. The whole path against a real
non-Triton server is tests/kserve_peer/test_runs_vs_kserve.py; against the embedded Triton,
every extension is served (below)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest
from tritonclient.utils import InferenceServerException

from tests.conftest import free_ports
from tests.locust_runs import REPO, error_lines
from tritonload.core.errors import UsageError
from tritonload.triton.admin import TritonAdmin, _not_served
from tritonload.triton.served import (
    Extensions,
    batch_line,
    batched_by_shapes,
    inferred_config,
    probe_extensions,
    served_model,
)


def _meta(*shapes: list[int]) -> dict:
    return {"name": "m", "inputs": [{"name": f"i{n}", "datatype": "FP32", "shape": s}
                                    for n, s in enumerate(shapes)]}


def test_a_batch_dimension_is_a_leading_minus_one_on_every_input():
    assert batched_by_shapes(_meta([-1, 64], [-1, 3]))
    assert not batched_by_shapes(_meta([-1, 64], [4]))  # Triton batches all inputs or none
    assert not batched_by_shapes(_meta([4]))
    assert not batched_by_shapes(_meta())


def test_batch_dim_overrides_the_shapes_and_a_bad_value_is_refused():
    assert inferred_config(_meta([-1, 64]))["max_batch_size"] == 1
    assert inferred_config(_meta([-1, 64]), "no")["max_batch_size"] == 0
    assert inferred_config(_meta([4]), "yes")["max_batch_size"] == 1
    with pytest.raises(UsageError, match="scalar input"):
        inferred_config(_meta([]), "yes")
    with pytest.raises(UsageError, match="--batch-dim 'maybe'"):
        inferred_config(_meta([4]), "maybe")
    line = batch_line("m", inferred_config(_meta([4])))
    assert line == ("m has no batch dimension, inferred from its metadata shapes (--batch-dim "
                    "yes|no overrides); requests carry its shapes as they are")


def test_each_missing_extension_is_one_line_and_a_run_json_field():
    extensions = Extensions({"model_configuration": True, "statistics": False,
                             "repository_index": True, "system_shared_memory": False})
    assert extensions.lines("http://h:1") == [
        "statistics extension not served by http://h:1: no server-side breakdown for this run",
        "system shared memory extension not served by http://h:1: --shared-memory system is "
        "refused"]
    assert extensions.record()["statistics"] is False
    assert Extensions.all_served().lines("x") == []


@pytest.mark.parametrize(("status", "message", "not_served"), [
    ("404", "an exception occurred in the client while decoding the response: 'error'", True),
    ("StatusCode.UNIMPLEMENTED", "Method not found", True),
    ("501", "not implemented", True),
    ("404", "Request for unknown model: 'x' is not found", False),  # a v2 error: the model
    ("400", "unexpected shape", False),
])
def test_a_route_that_does_not_exist_is_not_served(status, message, not_served):
    assert _not_served(InferenceServerException(message, status=status)) is not_served


@pytest.mark.integration
def test_the_embedded_triton_serves_every_extension(target):
    with TritonAdmin(target) as admin:
        assert probe_extensions(admin, "recommender") == Extensions.all_served()
        info, config = served_model(admin, "recommender")
    assert "source" not in config and info.max_batch_size == config["max_batch_size"] > 1


def test_a_server_that_is_not_kserve_v2_is_one_line(tmp_path):
    """A plain HTTP server (Python's own) on loopback: liveness is a 404 page, not v2."""
    (port,) = free_ports(1, start=18700)
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind",
                               "127.0.0.1", "--directory", str(tmp_path)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(port)
        proc = subprocess.run([sys.executable, "-m", "tritonload.cli", "run",
                               "locustfiles/mixed_models.py", "--url", f"http://127.0.0.1:{port}",
                               "--mix", "recommender:1", "-u", "1", "-t", "2s",
                               "--run-dir", str(tmp_path / "run")],
                              capture_output=True, text=True, timeout=120, cwd=REPO)
    finally:
        server.terminate()
        server.wait(10)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert error_lines(proc.stderr) == [
        f"tritonload: error: http://127.0.0.1:{port} answers, but not as a live KServe v2 "
        "server (GET /v2/health/live, gRPC ServerLive): is it one?"]


def _wait_for(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"http.server on {port} did not start")
