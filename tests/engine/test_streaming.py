"""Token streams from the real server over the lean gRPC client's stream call.

``text_generator`` (a decoupled Python-backend model, tritonload/server/model_code/
generator.py) is served by its own embedded Triton with round costs: a decode step of
19 ms + 1 ms per active sequence (20 ms alone), a prefill of 2 ms + 200 µs per prompt word.
Timestamps are taken by `GrpcConnection.stream_call` as each response's bytes are read, so
the gaps between them are the inter-token latencies (ITL) and the first is the time to
first token (TTFT).
"""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from tests.conftest import free_ports
from tritonload.server import EmbeddedTriton, Ports, demo_fleet
from tritonload.server.model_code.demo_functions import generated_token, ids_prompt
from tritonload.triton.shm import tensor_bytes
from tritonload.wire.grpc_wire import GrpcConnection, encode_headers, grpc_message

pytestmark = pytest.mark.integration

COSTS = {"step_base_us": 19000, "step_per_seq_us": 1000, "prefill_base_us": 2000,
         "prefill_per_token_us": 200}
STREAM_INFER = "/inference.GRPCInferenceService/ModelStreamInfer"


@pytest.fixture(scope="module")
def server():
    http, grpc, metrics = free_ports(start=19420)
    models = [m for m in demo_fleet({"text_generator": COSTS}) if m.name == "text_generator"]
    with EmbeddedTriton(models, ports=Ports(http, grpc, metrics)) as triton:
        yield triton


def _request(prompt: bytes | list[int], max_tokens: int) -> bytes:
    request = service_pb2.ModelInferRequest(model_name="text_generator")
    given = (("input_ids", "INT64", np.array(prompt, np.int64)) if isinstance(prompt, list)
             else ("text_input", "BYTES", np.array([prompt], dtype=object)))
    for name, datatype, array in (given, ("max_tokens", "INT32", np.array([max_tokens],
                                                                          np.int32))):
        tensor = request.inputs.add()
        tensor.name, tensor.datatype = name, datatype
        tensor.shape.append(len(array))
        request.raw_input_contents.append(bytes(tensor_bytes(array)))
    return grpc_message(request.SerializeToString())


def _generate(server, prompt: bytes | list[int], max_tokens: int, keep: bool = False):
    """(ms from the send to each token, the answer) for one generation on a new connection."""
    address = (server.host, server.ports.grpc)
    sock = socket.create_connection(address)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as the transports do
    connection = GrpcConnection(sock)
    try:
        block = encode_headers(STREAM_INFER, f"{address[0]}:{address[1]}", {}, 30.0)
        started = time.perf_counter_ns()
        answer = connection.stream_call(block, _request(prompt, max_tokens), keep=keep)
        return [(t - started) / 1e6 for t in answer.arrivals_ns], answer
    finally:
        connection.close()


def _words(n: int) -> bytes:
    return b" ".join(b"w%d" % i for i in range(n))


def test_tokens_arrive_in_order_and_ttft_is_below_e2e(server):
    prompt = _words(20)
    times, answer = _generate(server, prompt, 8, keep=True)
    tokens = [int(np.frombuffer(service_pb2.ModelStreamInferResponse.FromString(m)
                                .infer_response.raw_output_contents[1], np.int64)[0])
              for m in answer.messages]
    assert tokens == [generated_token(prompt, i) for i in range(8)]
    assert answer.error is None and times == sorted(times)
    assert times[0] < times[-1]  # TTFT < end to end


def _tokens(answer) -> list[int]:
    return [int(np.frombuffer(service_pb2.ModelStreamInferResponse.FromString(m)
                              .infer_response.raw_output_contents[1], np.int64)[0])
            for m in answer.messages]


def test_a_prompt_of_token_ids_generates_as_its_text_does(server):
    ids = [5, 7, 1234, 31999]
    _, answer = _generate(server, ids, 4, keep=True)
    assert answer.error is None
    assert _tokens(answer) == [generated_token(ids_prompt(ids), i) for i in range(4)]
    _, same = _generate(server, b"5 7 1234 31999", 4, keep=True)
    assert _tokens(same) == _tokens(answer)


def test_itl_is_the_decode_step_and_ttft_grows_with_the_prompt(server):
    _generate(server, _words(4), 2)  # warm-up: the first call sets the stub up
    times, _ = _generate(server, _words(10), 30)
    itl = np.diff(times)
    assert abs(np.median(itl) - 20.0) <= 2.0, itl  # 19 ms + 1 ms x 1 active
    short = np.median([_generate(server, _words(10), 1)[0][0] for _ in range(5)])
    long = np.median([_generate(server, _words(210), 1)[0][0] for _ in range(5)])
    # The prefill's cost model: 200 µs per word, 200 words more → 40 ms more.
    assert 40.0 - 4.0 <= long - short <= 40.0 + 6.0, (short, long)


def test_more_sequences_in_flight_stretch_the_gaps_between_tokens(server):
    """Continuous batching: with 4 sequences decoding, a step costs 19 + 4 × 1 = 23 ms."""
    def itls(streams: int) -> np.ndarray:
        gaps: list[np.ndarray] = []

        def one() -> None:
            gaps.append(np.diff(_generate(server, _words(10), 40)[0]))
        threads = [threading.Thread(target=one) for _ in range(streams)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert len(gaps) == streams
        return np.concatenate(gaps)

    alone, four = itls(1), itls(4)
    assert abs(np.median(alone) - 20.0) <= 2.0, alone
    # The model adds 3 ms a step for 3 more sequences; each response's send costs the
    # backend ~0.3 ms more (measured: 20.7 ms alone, 24.4 ms with 4, 29.4 ms with 8).
    assert 2.0 <= np.median(four) - np.median(alone) <= 6.0, (alone, four)
    assert np.percentile(four, 95) > np.percentile(alone, 95)


def test_a_stream_the_model_aborts_keeps_its_tokens_so_far(server):
    times, answer = _generate(server, b"ABORT@3 " + _words(5), 10)
    assert len(times) == 4  # three tokens, then the error response
    assert answer.error == "generation aborted after 3 tokens"


def test_streams_the_client_abandons_leave_the_batch(server):
    """A client that closes its connections mid-stream frees the model's batch (Triton
    cancels the requests): 16 abandoned sequences would add 16 ms to every later step."""
    address = (server.host, server.ports.grpc)
    sockets = []
    for _ in range(16):
        sock = socket.create_connection(address)
        connection = GrpcConnection(sock)
        block = encode_headers(STREAM_INFER, f"{address[0]}:{address[1]}", {}, 30.0)
        threading.Thread(target=_swallow, args=(connection, block), daemon=True).start()
        sockets.append(sock)
    time.sleep(0.5)  # every sequence is decoding
    for sock in sockets:
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()
    time.sleep(0.3)  # the next step notices the cancellations
    times, _ = _generate(server, _words(10), 20)
    assert np.median(np.diff(times)) < 20.0 + 4.0, times


def _swallow(connection: GrpcConnection, block: bytes) -> None:
    try:
        connection.stream_call(block, _request(_words(10), 2000))
    except Exception:  # the socket is closed under it: the point of the test
        pass
