"""The lean gRPC wire client against h2, an independent HTTP/2 implementation, as the peer.

h2 checks every frame the client sends (flow control, stream states, SETTINGS and PING
acknowledgements) and raises on a protocol violation, which fails the peer and the test. The
peer's behaviour drives the parts of HTTP/2 that Triton rarely exercises: tiny windows, small
frames, padding, CONTINUATION, trailers-only errors, RST_STREAM and GOAWAY.
"""

from __future__ import annotations

import itertools
import socket
import time

import grpc
import h2.events
import pytest
from tritonclient.grpc import service_pb2

from tests.engine.h2_peer import OK_HEADERS, Peer
from tritonload.core.errors import classify, message_of
from tritonload.wire.grpc_wire import GrpcStatusError, encode_headers, grpc_message

BLOCK = encode_headers("/inference.GRPCInferenceService/ModelInfer", "peer:1", {"x-token": "t"},
                       5.0)


def echo_size(conn, stream: int, body: bytes, pad: int = 0) -> None:
    """Answer with a message as long as the request's message, then grpc-status 0."""
    conn.send_headers(stream, OK_HEADERS)
    conn.send_data(stream, grpc_message(b"r" * (len(body) - 5)), pad_length=pad or None)
    conn.send_headers(stream, [("grpc-status", "0")], end_stream=True)


@pytest.fixture
def peer_factory():
    peers = []

    def make(answer, **kwargs) -> Peer:
        peers.append(Peer(answer, **kwargs))
        return peers[-1]
    yield make
    for peer in peers:
        peer.close()


def test_calls_reuse_one_connection_and_send_the_request_as_built(peer_factory):
    peer = peer_factory(echo_size)
    client = peer.client()
    for size in (0, 10, 1000):
        assert client.call(BLOCK, grpc_message(b"q" * size)) == size
    assert client.reusable and [body for _, body in peer.requests] == [
        grpc_message(b"q" * size) for size in (0, 10, 1000)]
    sent = peer.requests[0][0]
    assert sent[":path"] == "/inference.GRPCInferenceService/ModelInfer"
    assert sent["content-type"] == "application/grpc" and sent["te"] == "trailers"
    assert sent["x-token"] == "t" and sent["grpc-timeout"] == "5000m"


def test_large_request_waits_for_window_updates_and_splits_frames(peer_factory):
    peer = peer_factory(echo_size, window=1000, frame=16384)
    client = peer.client()
    message = grpc_message(bytes(range(256)) * 1200)  # 300 KB: about 300 window updates
    assert client.call(BLOCK, message) == len(message) - 5
    assert client.call(BLOCK, message) == len(message) - 5
    assert [body for _, body in peer.requests] == [message, message]


def test_padding_continuation_and_ping(peer_factory):
    def answer(conn, stream, body):
        conn.ping(b"12345678")
        # With 16 KB frames, a 20 KB header block needs CONTINUATION frames.
        conn.max_outbound_frame_size = conn.streams[stream].max_outbound_frame_size = 16384
        conn.send_headers(stream, [*OK_HEADERS, ("x-long", "v" * 20000)])
        conn.send_data(stream, grpc_message(b"r" * 50), pad_length=30)
        conn.send_headers(stream, [("grpc-status", "0"), ("x-more", "w" * 20000)],
                          end_stream=True)

    peer = peer_factory(answer)
    assert peer.client().call(BLOCK, grpc_message(b"q")) == 50
    peer.close()  # the peer reads everything the client sent, including the PING ACK
    assert any(isinstance(e, h2.events.PingAckReceived) for e in peer.events)


def test_error_status_trailers_only_and_percent_encoding(peer_factory):
    def answer(conn, stream, body):
        conn.send_headers(stream, [*OK_HEADERS, ("grpc-status", "5"),
                                   ("grpc-message", "Request for unknown model: 'x%20y' 100%25")],
                          end_stream=True)

    peer = peer_factory(answer)
    client = peer.client()
    with pytest.raises(GrpcStatusError) as info:
        client.call(BLOCK, grpc_message(b"q"))
    assert info.value.code() is grpc.StatusCode.NOT_FOUND
    assert message_of(info.value) == "Request for unknown model: 'x y' 100%"
    assert classify(info.value) == "model_not_found"
    assert client.reusable


def test_reset_stream_and_goaway_fail_the_call(peer_factory):
    def answer(conn, stream, body):
        if stream == 1:
            conn.reset_stream(stream, error_code=7)  # REFUSED_STREAM
        else:
            conn.close_connection(error_code=0, last_stream_id=1)

    peer = peer_factory(answer)
    client = peer.client()
    with pytest.raises(GrpcStatusError) as info:
        client.call(BLOCK, grpc_message(b"q"))
    assert info.value.code() is grpc.StatusCode.UNAVAILABLE and client.reusable
    with pytest.raises(GrpcStatusError) as info:
        client.call(BLOCK, grpc_message(b"q"))
    assert "GOAWAY" in info.value.details() and not client.reusable
    assert classify(info.value) == "unavailable"


def test_server_closing_mid_call_is_a_connection_error(peer_factory):
    def answer(conn, stream, body):
        conn.send_headers(stream, OK_HEADERS)
        peer.sock.sendall(conn.data_to_send())
        peer.sock.shutdown(socket.SHUT_WR)

    peer = peer_factory(answer)
    with pytest.raises(ConnectionError) as info:
        peer.client().call(BLOCK, grpc_message(b"q"))
    assert classify(info.value) == "unavailable"


STREAM_BLOCK = encode_headers("/inference.GRPCInferenceService/ModelStreamInfer", "peer:1", {},
                              None)


def _stream_response(token: int = 0, error: str = "") -> bytes:
    response = service_pb2.ModelStreamInferResponse(error_message=error)
    if not error:
        response.infer_response.model_name = "text_generator"
        response.infer_response.raw_output_contents.append(token.to_bytes(8, "little"))
    return response.SerializeToString()


def test_a_stream_call_times_each_message_as_it_arrives(peer_factory):
    """Three responses: one split over two DATA frames, two sharing a frame, sent 30 ms apart;
    each is timed when its last byte is read, and the trailers end the call."""
    def answer(conn, stream, body):
        conn.send_headers(stream, OK_HEADERS)
        first, second, third = (grpc_message(_stream_response(t)) for t in (11, 12, 13))
        for chunk in (first[:7], first[7:] + second[:3], second[3:] + third):
            conn.send_data(stream, chunk)
            peer.sock.sendall(conn.data_to_send())
            time.sleep(0.03)
        conn.send_headers(stream, [("grpc-status", "0")], end_stream=True)

    peer = peer_factory(answer)
    client = peer.client()
    started = time.perf_counter_ns()
    got = client.stream_call(STREAM_BLOCK, grpc_message(b"request"), keep=True)
    gaps_ms = [(b - a) / 1e6 for a, b in itertools.pairwise([started, *got.arrivals_ns])]
    assert got.error is None and len(got.arrivals_ns) == 3
    assert gaps_ms[1] > 20 and gaps_ms[2] < 10  # the second completes in the third frame
    assert got.sizes == [len(_stream_response(t)) for t in (11, 12, 13)]
    tokens = [int.from_bytes(service_pb2.ModelStreamInferResponse.FromString(m)
                             .infer_response.raw_output_contents[0], "little")
              for m in got.messages]
    assert tokens == [11, 12, 13] and client.reusable
    assert peer.requests[0][0][":path"] == "/inference.GRPCInferenceService/ModelStreamInfer"


def test_a_stream_response_error_is_kept_and_a_cut_message_fails(peer_factory):
    def answer(conn, stream, body):
        conn.send_headers(stream, OK_HEADERS)
        message = grpc_message(_stream_response(7)) + grpc_message(
            _stream_response(error="generation aborted after 1 tokens"))
        if stream == 3:
            message = message[:-4]  # the last message cut short
        conn.send_data(stream, message)
        conn.send_headers(stream, [("grpc-status", "0")], end_stream=True)

    peer = peer_factory(answer)
    client = peer.client()
    got = client.stream_call(STREAM_BLOCK, grpc_message(b"q"))
    assert got.error == "generation aborted after 1 tokens" and len(got.sizes) == 2
    assert got.messages is None
    with pytest.raises(GrpcStatusError, match="the stream ended inside a message") as info:
        client.stream_call(STREAM_BLOCK, grpc_message(b"q"))
    assert info.value.code() is grpc.StatusCode.INTERNAL
