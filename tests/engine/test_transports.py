"""The users' transports against the real server: sizes, big answers, errors, connection reuse."""

from __future__ import annotations

import pytest

from tritonload.core.config import Target
from tritonload.core.errors import UsageError, classify
from tritonload.server.fleet import DEMO_SHAPES
from tritonload.triton.admin import TritonAdmin
from tritonload.triton.payloads import ModelInfo, Payload, generate_payload
from tritonload.wire.grpc import GrpcTransport
from tritonload.wire.http import HttpTransport
from tritonload.wire.prepared import Prepared

pytestmark = pytest.mark.integration
WIDE_BYTES = 512 * 14041 * 4


def payload_for(target, model: str) -> Payload:
    with TritonAdmin(target) as admin:
        info = ModelInfo.from_served(admin.metadata(model), admin.config(model))
    return generate_payload(info, DEMO_SHAPES.get(model), count=2)


@pytest.fixture(params=["grpc", "http"])
def transport(request, target):
    if request.param == "grpc":
        transport = GrpcTransport(target)
    else:
        transport = HttpTransport(target)
    yield transport
    transport.close()


def test_small_answers_and_connection_reuse(transport, target):
    prepared = transport.prepare(payload_for(target, "recommender"))
    assert len(prepared) == 2 and all(p.bytes_sent > 512 for p in prepared)
    sizes = {transport.send(prepared[i % 2]) for i in range(200)}
    assert len(sizes) == 1 and 4 <= sizes.pop() < 400  # one FP32 score plus framing
    assert len(transport.connections.idle) == 1  # one request at a time: one connection


def test_a_connection_the_server_closed_while_idle_is_replaced(transport, target):
    import socket
    import time

    from tritonload.wire.sockets import peek_idle

    prepared = transport.prepare(payload_for(target, "recommender"))[0]
    transport.send(prepared)
    (idle,) = transport.connections.idle
    sock = getattr(idle, "sock", idle)
    sock.shutdown(socket.SHUT_WR)  # the server sees the end of the stream and closes its side
    deadline = time.monotonic() + 5
    while peek_idle(sock) is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert peek_idle(sock) == b""
    assert transport.send(prepared) > 0
    (replacement,) = transport.connections.idle
    assert replacement is not idle


def test_a_29_mb_answer_arrives_whole(transport, target):
    (prepared, _) = transport.prepare(payload_for(target, "wide_ranker"))
    for _ in range(2):
        assert WIDE_BYTES <= transport.send(prepared) < WIDE_BYTES + 1000


def test_errors_are_classified(transport, target):
    prepared = transport.prepare(payload_for(target, "recommender"))[0]
    wrong_model = Prepared("recommender", prepared.request, prepared.bytes_sent)
    if isinstance(transport, HttpTransport):
        wrong_model = Prepared("x", prepared.request.replace(b"/v2/models/recommender/",
                                                             b"/v2/models/no_such_model/"), 1)
    else:
        from tritonclient.grpc import service_pb2

        from tritonload.wire.grpc_wire import grpc_message

        request = service_pb2.ModelInferRequest.FromString(prepared.request[5:])
        request.model_name = "no_such_model"
        wrong_model = Prepared("x", grpc_message(request.SerializeToString()), 1)
    with pytest.raises(Exception) as info:
        transport.send(wrong_model)
    assert classify(info.value) == "model_not_found"
    assert transport.send(prepared) > 0  # the connection is still usable afterwards


def test_a_600_kb_request_arrives_whole(transport, target):
    # Larger than HTTP/2's default 64 KB window: the gRPC client waits for window updates.
    prepared = transport.prepare(payload_for(target, "image_classifier"))
    assert all(p.bytes_sent == 3 * 224 * 224 * 4 + 8 or p.bytes_sent > 3 * 224 * 224 * 4
               for p in prepared)
    sizes = {transport.send(prepared[i % 2]) for i in range(6)}
    assert len(sizes) == 1 and 4000 <= sizes.pop() < 5000  # 1000 FP32 predictions


@pytest.mark.parametrize("kind", [GrpcTransport, HttpTransport])
def test_a_request_past_its_timeout_is_a_timeout(target, kind):
    # A lone text_classifier request waits out its 5 ms batching delay before its first byte,
    # so a 2 ms timeout always expires. (wide_ranker, tried first, streams its 29 MB answer in
    # chunks that each came within 10 ms: 1 run in about 20 did not time out.) The server
    # answers DEADLINE_EXCEEDED (we send grpc-timeout) or the client gives up first; either
    # way the next call works the same.
    from dataclasses import replace

    transport = kind(replace(target, timeout_s=0.002))
    prepared = transport.prepare(payload_for(target, "text_classifier"))[0]
    try:
        for _ in range(2):
            with pytest.raises(Exception) as info:
                transport.send(prepared)
            assert classify(info.value) == "timeout"
        assert len(transport.connections.idle) <= 1
    finally:
        transport.close()


def test_closing_with_a_request_in_flight_lets_it_finish(transport, target):
    # A user stopping mid-request closes its transport; the in-flight call must not fail on a
    # socket closed under it (it was recorded as "unavailable: Bad file descriptor").
    import gevent

    prepared = transport.prepare(payload_for(target, "wide_ranker"))[0]
    transport.send(prepared)  # one connection idle, the next call opens a second one
    in_flight = [gevent.spawn(transport.send, prepared) for _ in range(2)]
    gevent.sleep(0.02)
    transport.close()
    assert [g.get(timeout=10) >= WIDE_BYTES for g in in_flight] == [True, True]


def test_the_http_head_is_rendered_once_with_the_target_headers():
    from tritonload.wire.http import request_head

    head = request_head("/v2/models/m/infer", "[::1]:8000",
                        {"Authorization": "Bearer t", "content-length": "1", "HOST": "lb"},
                        body_size=120, json_size=100)
    assert head == (b"POST /v2/models/m/infer HTTP/1.1\r\nHost: lb\r\n"
                    b"Authorization: Bearer t\r\nContent-Type: application/octet-stream\r\n"
                    b"Content-Length: 120\r\nInference-Header-Content-Length: 100\r\n\r\n")
    assert b"Inference-Header" not in request_head("/u", "h:1", {}, 7, None)


@pytest.mark.parametrize("headers", [{"X-A": "1\r\nX-B: 2"}, {"X A": "1"}, {"": "1"}])
def test_a_header_that_would_break_a_request_head_is_refused(target, headers):
    from dataclasses import replace

    with pytest.raises(UsageError, match="bad header"):
        replace(target, headers=headers)


@pytest.mark.parametrize("kind", [GrpcTransport, HttpTransport])
def test_bytes_tensors_go_out_length_prefixed(kind):
    """BYTES elements, each after its 4-byte little-endian length (KServe's raw layout). The
    gRPC request once carried the serialized array's object pointer instead."""
    import numpy as np

    payload = Payload("m", ({"text": np.array([[b"ab", b"cde"]], dtype=object)},), ("out",),
                      "test")
    (prepared,) = kind(Target(host="127.0.0.1")).prepare(payload)
    assert b"\x02\x00\x00\x00ab\x03\x00\x00\x00cde" in bytes(prepared.request)


class _Chunks:
    """A socket that hands out scripted byte strings, one per recv."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = list(chunks)

    def recv(self, size: int) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def test_server_sent_events_are_split_out_of_chunks_and_errors_kept():
    from tritonload.wire.http import read_chunked
    from tritonload.wire.prepared import StreamAnswer
    from tritonload.wire.sse import _Events

    first, second = b'data: {"token_id":1}', b'data: {"error":"generation aborted"}'
    sock = _Chunks(_chunk(first + b"\n\n" + second[:10]), _chunk(second[10:] + b"\n\n"),
                   b"0\r\n\r\n")
    answer = StreamAnswer()
    events = _Events(answer)
    assert read_chunked(sock, b"", events.feed) == b""  # handed over, not kept
    events.end()
    assert answer.sizes == [len(first), len(second)] and answer.error == "generation aborted"
    assert answer.arrivals_ns == sorted(answer.arrivals_ns)
    cut = _Events(StreamAnswer())
    cut.feed(b"data: {\"tok")
    with pytest.raises(ConnectionError, match="ended inside an event"):
        cut.end()
