"""Auth against a real Triton whose inference API is restricted by its own header check.

The server is `tritonload serve --auth-header x-api-key=secret`'s: Triton's
``--http-restricted-api`` and ``--grpc-restricted-protocol``. Over gRPC Triton expects the
header as ``triton-grpc-protocol-x-api-key``.
"""

from __future__ import annotations

import pytest

from tests.conftest import free_ports
from tests.locust_runs import error_lines, records, run_locust
from tritonload.core.config import Target
from tritonload.core.errors import classify
from tritonload.server import AuthRestriction, EmbeddedTriton, Ports, demo_fleet
from tritonload.triton.admin import TritonAdmin
from tritonload.triton.payloads import ModelInfo, generate_payload
from tritonload.wire.grpc import GrpcTransport
from tritonload.wire.http import HttpTransport

pytestmark = pytest.mark.integration

RIGHT = ("--header", "x-api-key=secret", "--header", "triton-grpc-protocol-x-api-key=secret")


@pytest.fixture(scope="module")
def locked(tmp_path_factory):
    """recommender only, its inference restricted to requests with x-api-key: secret."""
    log = tmp_path_factory.mktemp("triton-auth") / "tritonserver.log"
    server = EmbeddedTriton([m for m in demo_fleet() if m.name == "recommender"],
                            Ports(*free_ports(start=19500)), log_file=log,
                            auth=AuthRestriction("x-api-key", "secret"))
    server.start()
    yield server
    server.stop()


def _run(locked, tmp_path, *args):
    return run_locust("locustfiles/mixed_models.py", "-u", "2", "-r", "2", "-t", "3s",
                      "--host", f"127.0.0.1:{locked.ports.http}", "--mix", "recommender:1",
                      "--run-dir", str(tmp_path / "run"), *args, cwd=tmp_path)


def test_the_right_header_works_over_both_protocols(locked, tmp_path):
    proc = _run(locked, tmp_path, *RIGHT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    frame = records(tmp_path / "run")
    assert set(frame["protocol"]) == {"grpc", "http"}
    assert len(frame) > 50 and (frame["error_kind"] == "").all()


@pytest.mark.parametrize(("headers", "protocol"), [
    ((), "grpc"),                                                      # no header at all
    (("--header", "x-api-key=wrong", "--header", "triton-grpc-protocol-x-api-key=wrong"),
     "grpc"),                                                          # a wrong token
    (("--header", "triton-grpc-protocol-x-api-key=secret"), "http"),   # gRPC's only
], ids=["missing", "wrong", "http-missing"])
def test_a_missing_or_wrong_header_stops_at_preflight(locked, tmp_path, headers, protocol):
    proc = _run(locked, tmp_path, *headers)
    assert proc.returncode == 2, proc.stderr[-2000:]
    (line,) = error_lines(proc.stderr)
    port = locked.ports.grpc if protocol == "grpc" else locked.ports.http
    assert line.startswith(f"tritonload: error: authentication failed on "
                           f"{protocol}://127.0.0.1:{port}: "), line
    assert "expecting header" in line and "Traceback" not in proc.stderr
    assert "Ramping" not in proc.stderr  # refused before any load
    assert not (tmp_path / "run" / "requests").exists() or not records(tmp_path / "run").size


@pytest.mark.parametrize("transport_class", [GrpcTransport, HttpTransport])
def test_requests_refused_mid_run_are_their_own_kind(locked, transport_class):
    """What a user's requests meet when the token stops working: each failure is 'auth'."""
    target = Target("127.0.0.1", locked.ports.http, locked.ports.grpc)  # no header
    with TritonAdmin(target) as admin:  # metadata is not restricted
        info = ModelInfo.from_served(admin.metadata("recommender"), admin.config("recommender"))
    transport = transport_class(target)
    try:
        (prepared,) = transport.prepare(generate_payload(info, count=1))
        kinds = set()
        for _ in range(3):
            with pytest.raises(Exception) as caught:
                transport.send(prepared)
            kinds.add(classify(caught.value))
        assert kinds == {"auth"}
    finally:
        transport.close()
