"""Unit tests of the engine's pure parts: targets, mix, error taxonomy, stats deltas."""

from __future__ import annotations

import collections
import random
import ssl

import grpc
import pytest
from tritonclient.utils import InferenceServerException

from tritonload.core.config import Target, TlsFiles
from tritonload.core.errors import UsageError, classify, message_of
from tritonload.core.mix import ModelMix
from tritonload.load.server_stats import delta, snapshot


@pytest.mark.parametrize("url, http, grpc_port, pinned, ssl", [
    ("localhost", "localhost:8000", "localhost:8001", None, False),
    ("10.0.0.5:9000", "10.0.0.5:9000", "10.0.0.5:9001", None, False),
    ("grpc://triton:8001", None, "triton:8001", "grpc", False),
    ("grpcs://triton", None, "triton:8001", "grpc", True),
    ("http://triton:80", "triton:80", None, "http", False),
    ("https://triton:443/", "triton:443", None, "http", True),
    ("[::1]:8000", "::1:8000", "::1:8001", None, False),
])
def test_target_parse(url, http, grpc_port, pinned, ssl):
    target = Target.parse(url)
    assert (target.url("http") if target.supports("http") else None) == http
    assert (target.url("grpc") if target.supports("grpc") else None) == grpc_port
    assert target.pinned == pinned and target.ssl == ssl


@pytest.mark.parametrize("url, fragment", [
    ("ftp://x", "scheme must be one of"),
    ("host:port", "not a number"),
    ("host:70000", "not in 1..65535"),
    ("", "expected host"),
])
def test_bad_targets_are_one_line(url, fragment):
    with pytest.raises(UsageError, match=fragment):
        Target.parse(url)


def test_pinned_target_refuses_other_protocol():
    with pytest.raises(UsageError, match="grpc-only"):
        Target.parse("grpc://h:1").url("http")


def test_mix_draw_follows_weights_within_5_points():
    mix = ModelMix.of("text_classifier:5, image_classifier:1, recommender:3")
    rng = random.Random(1)
    counts = collections.Counter(mix.draw(rng) for _ in range(2000))
    for model, share in mix.shares().items():
        assert abs(counts[model] / 2000 - share) < 0.05


@pytest.mark.parametrize("spec, fragment", [
    ("", "empty"), ("a:x", "not a number"), ("a:0", "no positive weight"), ("a:-1", ">= 0"),
])
def test_bad_mix(spec, fragment):
    with pytest.raises(UsageError, match=fragment):
        ModelMix.of(spec)


class FakeRpcError(grpc.RpcError):
    """grpc raises RpcError subclasses carrying code() and details()."""

    def __init__(self, code, details):
        self._code, self._details = code, details

    def code(self):
        return self._code

    def details(self):
        return self._details


@pytest.mark.parametrize("exc, kind", [
    (InferenceServerException("Request for unknown model: 'x' is not found", status="404"),
     "model_not_found"),
    (InferenceServerException("unexpected shape for input 'a' for model 'm'. Expected [-1,64], "
                              "got [1,63]", status="StatusCode.INVALID_ARGUMENT"),
     "shape_mismatch"),
    (InferenceServerException("inference input 'a' data-type is 'FP64', but model 'm' expects "
                              "'FP32'", status="400"), "invalid_input"),
    (InferenceServerException("Deadline Exceeded", status="StatusCode.DEADLINE_EXCEEDED"),
     "timeout"),
    (InferenceServerException("failed to connect to all addresses",
                              status="StatusCode.UNAVAILABLE"), "unavailable"),
    (InferenceServerException("Request for model 'm' is not ready",
                              status="StatusCode.UNAVAILABLE"),
     "model_not_ready"),
    (InferenceServerException("out of memory", status="StatusCode.INTERNAL"), "resource_exhausted"),
    (InferenceServerException("boom", status="500"), "server_error"),
    (FakeRpcError(grpc.StatusCode.NOT_FOUND, "Request for unknown model"), "model_not_found"),
    (FakeRpcError(grpc.StatusCode.UNAVAILABLE, "Socket closed"), "unavailable"),
    (ConnectionRefusedError(111, "Connection refused"), "unavailable"),
    (TimeoutError("timed out"), "timeout"),
    (InferenceServerException("This API is restricted, expecting header 'x-api-key'",
                              status="403"), "auth"),
    (InferenceServerException("This protocol is restricted, expecting header "
                              "'triton-grpc-protocol-x-api-key'", status="StatusCode.UNAVAILABLE"),
     "auth"),
    (FakeRpcError(grpc.StatusCode.UNAUTHENTICATED, "bad token"), "auth"),
    (FakeRpcError(grpc.StatusCode.PERMISSION_DENIED, "no"), "auth"),
    (InferenceServerException("Unauthorized", status="401"), "auth"),
    # TLS: grpcio's failed handshake is UNAVAILABLE, told apart from an outage by its message
    (InferenceServerException(
        "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:19601: Tls "
        "handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:1000007d:SSL routines:"
        "OPENSSL_internal:CERTIFICATE_VERIFY_FAILED: self signed certificate in certificate "
        "chain", status="StatusCode.UNAVAILABLE"), "tls"),
    (ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify "
                                     "failed: self-signed certificate in certificate chain"),
     "tls"),
    (ssl.SSLError(1, "[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert certificate "
                     "required"), "tls"),
    (ssl.SSLEOFError(8, "EOF occurred in violation of protocol"), "unavailable"),  # a hang-up
    (ValueError("strange"), "other"),
])
def test_error_taxonomy(exc, kind):
    assert classify(exc) == kind


def test_tls_files_are_checked_once_in_one_line(tmp_path):
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    ca_file, cert_file, key_file = (tmp_path / n for n in ("ca.pem", "c.pem", "c.key"))
    ca.cert_pem.write_to_path(str(ca_file))
    client = ca.issue_cert("client@example")
    client.cert_chain_pems[0].write_to_path(str(cert_file))
    client.private_key_pem.write_to_path(str(key_file))
    tls = TlsFiles(str(ca_file), str(cert_file), str(key_file))
    assert Target.parse("grpcs://triton:8001", tls=tls).tls == tls
    assert TlsFiles.of() is None
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    for make, fragment in [
        (lambda: TlsFiles(str(tmp_path / "missing.pem")), "--tls-ca"),
        (lambda: TlsFiles(cert=str(cert_file)), "go together"),
        (lambda: TlsFiles(str(garbage)), "not a PEM CA certificate"),
        (lambda: TlsFiles(str(ca_file), str(cert_file), str(ca_file)), "matching key"),
        (lambda: Target.parse("grpc://triton:8001", tls=tls), "need a TLS target"),
    ]:
        with pytest.raises(UsageError, match=fragment) as caught:
            make()
        assert "\n" not in str(caught.value)


def test_tls_targets_describe_their_scheme():
    assert Target.parse("grpcs://triton:8001").describe() == "grpcs://triton:8001"
    assert Target.parse("http://triton:80").describe() == "http://triton:80"


def test_message_drops_status_prefix():
    exc = InferenceServerException("unknown model", status="404")
    assert message_of(exc) == "unknown model"


def _stats(success, executions, inferences, queue_ns, batches):
    return {
        "name": "m", "inference_count": str(inferences), "execution_count": str(executions),
        "inference_stats": {"success": {"count": str(success), "ns": "1"},
                            "queue": {"count": str(success), "ns": str(queue_ns)}},
        "batch_stats": [{"batch_size": str(b), "compute_infer": {"count": str(n), "ns": str(n)}}
                        for b, n in batches.items()],
    }


def test_stats_deltas_are_differences_with_missing_fields_as_zero():
    before = snapshot(_stats(10, 5, 10, 1000, {1: 2, 4: 2}))
    after = snapshot(_stats(30, 9, 30, 5000, {1: 2, 4: 4, 8: 1}))
    counters, batches = delta(before, after)
    assert counters["success_count"] == 20
    assert counters["execution_count"] == 4
    assert counters["inference_count"] == 20
    assert counters["queue_ns"] == 4000
    assert counters["compute_infer_ns"] == 0  # absent in both: 0, not an error
    assert batches == {4: (2, 2), 8: (1, 1)}


def test_compact_rows_keep_every_row_in_order_and_seal_as_they_grow():
    import pyarrow as pa

    from tritonload.core.schema import ARRIVALS
    from tritonload.load.server_stats import SEAL_ROWS, SEAL_TABLES, CompactRows

    rows = CompactRows(ARRIVALS)
    assert rows.table().num_rows == 0 and rows.table().schema == ARRIVALS
    fed = [{"t_start_ns": i, "t_end_ns": i + 1, "scheduled": i, "late": 0, "dropped": 0}
           for i in range(SEAL_ROWS + 5)]
    rows.extend(fed[:SEAL_ROWS])
    assert len(rows._sealed) == 1 and not rows._dicts  # sealed at SEAL_ROWS
    rows.extend(fed[SEAL_ROWS:])
    for i in range(SEAL_TABLES):
        rows.add_table(pa.Table.from_pylist([{**fed[0], "scheduled": -i}], schema=ARRIVALS))
    assert len(rows._sealed) == 2 and len(rows) == SEAL_ROWS + 5 + SEAL_TABLES
    table = rows.table()
    assert table.column("scheduled").to_pylist() == [
        *range(SEAL_ROWS + 5), *(-i for i in range(SEAL_TABLES))]
    assert all(c.num_chunks == 1 for c in rows._sealed[0].columns)
