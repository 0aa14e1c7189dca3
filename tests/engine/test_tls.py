"""TLS against the real server: Triton's own TLS on gRPC, and HTTPS through a real nginx.

A CA and certificates for 127.0.0.1 / localhost are made at run time (trustme). Two embedded
servers serve recommender only: one with TLS on gRPC (`tritonload serve --grpc-tls-cert`),
one with mutual TLS (`--grpc-tls-mutual`). Triton's HTTP endpoint has no TLS option, so
``https://`` is tested through Debian's nginx terminating TLS in front of the first server's
plain HTTP port, as production does.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import free_ports
from tests.locust_runs import error_lines, records, run_locust
from tritonload.cli.headless import LocustRun
from tritonload.cli.main import build_parser
from tritonload.core.config import Target, TlsFiles
from tritonload.core.errors import UsageError, classify
from tritonload.server import EmbeddedTriton, GrpcTls, Ports, demo_fleet
from tritonload.triton.admin import TritonAdmin
from tritonload.triton.payloads import ModelInfo, generate_payload
from tritonload.wire.grpc import GrpcTransport
from tritonload.wire.http import HttpTransport

trustme = pytest.importorskip("trustme")

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """The files: our CA, another CA, a server certificate and a client certificate."""
    folder = tmp_path_factory.mktemp("pki")
    ca, other = trustme.CA(), trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("load-generator@example")
    blobs = {"ca": ca.cert_pem, "other_ca": other.cert_pem,
             "server_cert": server.cert_chain_pems[0], "server_key": server.private_key_pem,
             "client_cert": client.cert_chain_pems[0], "client_key": client.private_key_pem}
    files = {}
    for name, blob in blobs.items():
        files[name] = str(folder / f"{name}.pem")
        blob.write_to_path(files[name])
    return SimpleNamespace(**files, authority=ca)


def _server(tmp_path_factory, start: int, tls: GrpcTls) -> EmbeddedTriton:
    log = tmp_path_factory.mktemp("triton-tls") / "tritonserver.log"
    return EmbeddedTriton([m for m in demo_fleet() if m.name == "recommender"],
                          Ports(*free_ports(start=start)), log_file=log, grpc_tls=tls)


@pytest.fixture(scope="module")
def tls_server(pki, tmp_path_factory):
    """TLS on gRPC: clients check the server against our CA."""
    server = _server(tmp_path_factory, 19600, GrpcTls(pki.server_cert, pki.server_key))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mtls_server(pki, tmp_path_factory):
    """Mutual TLS on gRPC: the server wants a client certificate signed by our CA."""
    server = _server(tmp_path_factory, 19700,
                     GrpcTls(pki.server_cert, pki.server_key, pki.ca, mutual=True))
    server.start()
    yield server
    server.stop()


def _run(tmp_path, host, *args):
    return run_locust("locustfiles/mixed_models.py", "-u", "2", "-r", "2", "-t", "3s",
                      "--host", host, "--mix", "recommender:1",
                      "--run-dir", str(tmp_path / "run"), *args, cwd=tmp_path)


def _assert_clean_run(proc, tmp_path, protocol):
    assert proc.returncode == 0, proc.stderr[-2000:]
    frame = records(tmp_path / "run")
    assert set(frame["protocol"]) == {protocol}
    assert len(frame) > 50 and (frame["error_kind"] == "").all()


def _assert_one_line(proc, tmp_path, start, *fragments):
    assert proc.returncode == 2, proc.stderr[-2000:]
    (line,) = error_lines(proc.stderr)
    assert line.startswith(f"tritonload: error: {start}"), line
    for fragment in fragments:
        assert fragment in line, line
    assert "Traceback" not in proc.stderr and "Ramping" not in proc.stderr  # before any load
    assert not (tmp_path / "run" / "requests").exists() or not records(tmp_path / "run").size


def _info(target: Target) -> ModelInfo:
    with TritonAdmin(target) as admin:
        return ModelInfo.from_served(admin.metadata("recommender"), admin.config("recommender"))


def _send_kinds(transport_class, target: Target, info: ModelInfo, times: int = 2) -> set[str]:
    transport = transport_class(target)
    try:
        (prepared,) = transport.prepare(generate_payload(info, count=1))
        kinds = set()
        for _ in range(times):
            with pytest.raises(Exception) as caught:
                transport.send(prepared)
            kinds.add(classify(caught.value))
        return kinds
    finally:
        transport.close()


# -- TLS on gRPC -----------------------------------------------------------------------------

def test_grpcs_with_the_right_ca_runs_clean(tls_server, pki, tmp_path):
    proc = _run(tmp_path, f"grpcs://127.0.0.1:{tls_server.ports.grpc}", "--tls-ca", pki.ca)
    _assert_clean_run(proc, tmp_path, "grpc")


def test_grpcs_with_a_wrong_ca_stops_at_preflight(tls_server, pki, tmp_path):
    port = tls_server.ports.grpc
    proc = _run(tmp_path, f"grpcs://127.0.0.1:{port}", "--tls-ca", pki.other_ca)
    _assert_one_line(proc, tmp_path, f"TLS failed on grpcs://127.0.0.1:{port}: ",
                     "CERTIFICATE_VERIFY_FAILED", f"--tls-ca {pki.other_ca}")
    assert "Handshake failed" not in proc.stderr  # grpc's own log line (GRPC_VERBOSITY)


def test_a_missing_tls_file_is_one_line(tls_server, tmp_path):
    missing = str(tmp_path / "nowhere.pem")
    proc = _run(tmp_path, f"grpcs://127.0.0.1:{tls_server.ports.grpc}", "--tls-ca", missing)
    _assert_one_line(proc, tmp_path, f"--tls-ca {missing}: no such file")


def test_the_wire_transport_checks_the_ca(tls_server, pki):
    url = f"grpcs://127.0.0.1:{tls_server.ports.grpc}"
    info = _info(Target.parse(url, tls=TlsFiles(pki.ca)))
    assert _send_kinds(GrpcTransport, Target.parse(url, tls=TlsFiles(pki.other_ca)),
                       info) == {"tls"}
    transport = GrpcTransport(Target.parse(url, tls=TlsFiles(pki.ca)))
    try:
        (prepared,) = transport.prepare(generate_payload(info, count=1))
        assert transport.send(prepared) > 0
    finally:
        transport.close()


def test_the_hostname_is_checked(pki, tmp_path):
    """A certificate our CA signed for another name does not vouch for 127.0.0.1."""
    elsewhere = pki.authority.issue_cert("triton.example")
    cert, key = tmp_path / "elsewhere.pem", tmp_path / "elsewhere.key"
    elsewhere.cert_chain_pems[0].write_to_path(str(cert))
    elsewhere.private_key_pem.write_to_path(str(key))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve_one() -> None:
        with contextlib.suppress(OSError):
            connection, _ = listener.accept()
            with contextlib.suppress(OSError), context.wrap_socket(connection, server_side=True):
                pass

    thread = threading.Thread(target=serve_one, daemon=True)
    thread.start()
    transport = GrpcTransport(Target.parse(f"grpcs://127.0.0.1:{port}", tls=TlsFiles(pki.ca)))
    try:
        with pytest.raises(ssl.SSLCertVerificationError, match="IP address mismatch") as caught:
            transport.connections.get()
        assert classify(caught.value) == "tls"
    finally:
        transport.close()
        listener.close()
        thread.join(5)


# -- mutual TLS on gRPC ----------------------------------------------------------------------

def test_mtls_without_a_client_certificate_is_refused_at_preflight(mtls_server, pki, tmp_path):
    port = mtls_server.ports.grpc
    proc = _run(tmp_path, f"grpcs://127.0.0.1:{port}", "--tls-ca", pki.ca)
    _assert_one_line(proc, tmp_path, f"TLS failed on grpcs://127.0.0.1:{port}: ",
                     "refused the client certificate", "no client certificate")


def test_mtls_refusal_on_the_wire_is_its_own_kind(mtls_server, pki):
    """What a user's requests meet when the server stops taking its certificate: 'tls'."""
    url = f"grpcs://127.0.0.1:{mtls_server.ports.grpc}"
    info = _info(Target.parse(url, tls=TlsFiles(pki.ca, pki.client_cert, pki.client_key)))
    assert _send_kinds(GrpcTransport, Target.parse(url, tls=TlsFiles(pki.ca)), info) == {"tls"}


def test_mtls_with_the_client_certificate_runs_clean(mtls_server, pki, tmp_path):
    proc = _run(tmp_path, f"grpcs://127.0.0.1:{mtls_server.ports.grpc}", "--tls-ca", pki.ca,
                "--tls-client-cert", pki.client_cert, "--tls-client-key", pki.client_key)
    _assert_clean_run(proc, tmp_path, "grpc")


# -- the CLI's side --------------------------------------------------------------------------

def test_serve_options_become_tritonserver_flags(pki):
    args = build_parser().parse_args([
        "serve", "--grpc-tls-cert", pki.server_cert, "--grpc-tls-key", pki.server_key,
        "--grpc-tls-ca", pki.ca, "--grpc-tls-mutual"])
    from tritonload.cli.commands.serve import server_from_args

    assert server_from_args(args).grpc_tls.flags() == [
        "--grpc-use-ssl=true", f"--grpc-server-cert={pki.server_cert}",
        f"--grpc-server-key={pki.server_key}", f"--grpc-root-cert={pki.ca}",
        "--grpc-use-ssl-mutual=true"]
    args = build_parser().parse_args(["serve", "--grpc-tls-cert", pki.server_cert,
                                      "--grpc-tls-key", pki.server_key, "--grpc-tls-mutual"])
    with pytest.raises(UsageError, match="--grpc-tls-mutual needs --grpc-tls-ca"):
        server_from_args(args)


def test_headless_children_get_the_tls_files(pki, tmp_path):
    """`tritonload run | bench | capacity` hand their Locust child the same TLS files."""
    tls = TlsFiles(pki.ca, pki.client_cert, pki.client_key)
    job = LocustRun(Path("x.py"), Target.parse("grpcs://triton:8001", tls=tls),
                    tmp_path / "run", 1, 1.0)
    command = job.command()
    assert command[command.index("--host") + 1] == "grpcs://triton:8001"
    for flag, path in (("--tls-ca", pki.ca), ("--tls-client-cert", pki.client_cert),
                       ("--tls-client-key", pki.client_key)):
        assert command[command.index(flag) + 1] == path


def test_workers_get_the_tls_files_from_the_master(pki):
    """The master's context carries the TLS files to its workers (msgpack: no dataclasses)."""
    import msgpack

    from tritonload.load.arrivals import ArrivalLedger
    from tritonload.load.context import RunContext
    from tritonload.load.handoff import context_from_message, context_message

    tls = TlsFiles(pki.ca, pki.client_cert, pki.client_key)
    sent = RunContext(Target.parse("grpcs://127.0.0.1:8001", tls=tls), {}, {}, 0,
                      ArrivalLedger())
    wire = msgpack.loads(msgpack.dumps(context_message(sent, rate_users=1)), raw=False)
    assert context_from_message(wire, [], worker_index=0).target == sent.target


# -- HTTPS through nginx ---------------------------------------------------------------------

NGINX_CONF = """\
{user}daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream triton {{
        server 127.0.0.1:{upstream};
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        client_max_body_size 64m;
        location / {{
            proxy_pass http://triton;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


def _wait_for_port(port: int, proc: subprocess.Popen, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited with {proc.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nginx did not listen on {port} in {timeout_s:g} s")


@pytest.fixture(scope="module")
def nginx(tls_server, pki, tmp_path_factory):
    """nginx terminating TLS on a free port, proxying to Triton's plain HTTP endpoint."""
    binary = shutil.which("nginx")
    if binary is None:
        pytest.skip("nginx is not installed (apt-get install --no-install-recommends nginx; "
                    ".ci/run installs it)")
    prefix = tmp_path_factory.mktemp("nginx")
    (port,) = free_ports(1, start=19650)
    conf = prefix / "nginx.conf"
    # As root, nginx's workers would run as nobody, who cannot write the temp paths here.
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf.write_text(NGINX_CONF.format(user=user, prefix=prefix, upstream=tls_server.ports.http,
                                      port=port, cert=pki.server_cert, key=pki.server_key))
    proc = subprocess.Popen([binary, "-c", str(conf), "-p", str(prefix), "-e",
                             str(prefix / "error.log")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for_port(port, proc)
        yield SimpleNamespace(port=port)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_https_through_nginx_with_the_right_ca_runs_clean(nginx, pki, tmp_path):
    proc = _run(tmp_path, f"https://127.0.0.1:{nginx.port}", "--tls-ca", pki.ca)
    _assert_clean_run(proc, tmp_path, "http")


def test_https_through_nginx_with_a_wrong_ca_stops_at_preflight(nginx, pki, tmp_path):
    proc = _run(tmp_path, f"https://127.0.0.1:{nginx.port}", "--tls-ca", pki.other_ca)
    _assert_one_line(proc, tmp_path, f"TLS failed on https://127.0.0.1:{nginx.port}: ",
                     "CERTIFICATE_VERIFY_FAILED")


def test_https_wire_transport_checks_the_ca(nginx, pki):
    url = f"https://127.0.0.1:{nginx.port}"
    info = _info(Target.parse(url, tls=TlsFiles(pki.ca)))
    assert _send_kinds(HttpTransport, Target.parse(url, tls=TlsFiles(pki.other_ca)),
                       info) == {"tls"}
    transport = HttpTransport(Target.parse(url, tls=TlsFiles(pki.ca)))
    try:
        (prepared,) = transport.prepare(generate_payload(info, count=1))
        assert transport.send(prepared) > 0
    finally:
        transport.close()
