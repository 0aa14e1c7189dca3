"""tritonload's own transports (`tritonload.wire`) against a real non-Triton KServe v2 server.

The transports are built the way the users build them (`UserSettings.target_of`, then
``HttpTransport`` / ``GrpcTransport``) and driven as the users drive them: sync mode sends
one request after another on one connection; async mode is a pool of greenlets each sending
on the one transport (`tritonload.load.users.TritonUser._send_forever`). The answers are
decoded by the transports' own readers and checked numerically, through ``--validate``'s
`check_outputs` and directly; errors must be classified (`tritonload.core.errors.classify`)
promptly, and leave the connection usable. No mocks: every call goes to kserve 0.21.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest
from gevent.pool import Pool

from tests.kserve_peer.peer import Peer, start_peer
from tritonload.core.config import Target
from tritonload.core.errors import ERROR_KINDS, OutputMismatch, classify, message_of, status_of
from tritonload.core.mix import ModelMix
from tritonload.load.context import UserSettings
from tritonload.triton.payloads import Payload
from tritonload.wire.grpc import GrpcTransport
from tritonload.wire.http import HttpTransport, read_body, read_head
from tritonload.wire.prepared import Prepared

PROTOCOLS = ("http", "grpc")
FEATURES = 64
#: An error answer (or a timeout) must come back well within this; a hang would not.
PROMPT_S = 5.0


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def recommender(rows: int, seed: int = 0, integral: bool = False) -> dict[str, np.ndarray]:
    """One recommender entry. ``integral``: small whole numbers, so every dot product is
    exact in FP32 whatever the summation order (``--validate`` compares bytes)."""
    rng = _rng(seed)
    if integral:
        return {name: rng.integers(-4, 5, (rows, FEATURES)).astype(np.float32)
                for name in ("user_features", "item_features")}
    return {name: rng.standard_normal((rows, FEATURES), dtype=np.float32)
            for name in ("user_features", "item_features")}


def dot(entry: dict[str, np.ndarray]) -> np.ndarray:
    return (entry["user_features"] * entry["item_features"]).sum(axis=1, keepdims=True)


def fixed(seed: int = 0) -> dict[str, np.ndarray]:
    return {"x": _rng(seed).standard_normal(4, dtype=np.float32)}


def payload(model: str, *entries: dict[str, np.ndarray], validation=None) -> Payload:
    outputs = ("score",) if model == "recommender" else ("y",)
    return Payload(model, tuple(entries), outputs, "test", validation=validation)


def target_of(peer: Peer, mode: str = "sync", timeout_s: float = 30.0) -> Target:
    """The peer as a user class of ``mode`` sends to it (its timeout, its headers)."""
    settings = UserSettings(mix=ModelMix.of({"recommender": 1, "fixed_scorer": 1}), mode=mode,
                            max_in_flight=8, timeout_s=timeout_s)
    return settings.target_of(Target(host="127.0.0.1", http_port=peer.http_port,
                                     grpc_port=peer.grpc_port))


def make_transport(protocol: str, target: Target) -> HttpTransport | GrpcTransport:
    """What `TritonHttpUser` / `TritonGrpcUser.make_transport` return."""
    return HttpTransport(target) if protocol == "http" else GrpcTransport(target)


@pytest.fixture(params=PROTOCOLS)
def transport(request, kserve_peer):
    transport = make_transport(request.param, target_of(kserve_peer))
    yield transport
    transport.close()


def decoded(transport, prepared: Prepared) -> dict[str, np.ndarray]:
    """One answer's outputs, read by the transport's own connections and reader.

    `send` only counts an answer unless it validates it; this is its exchange with the
    decoding ``--validate`` does, for outputs checked with a tolerance.
    """
    connection = transport.connections.get()
    if isinstance(transport, HttpTransport):
        from tritonclient.http import InferResult

        connection.sendall(prepared.request)
        status, data, keep_alive, json_size = read_body(connection, *read_head(connection))
        transport.connections.give_back(connection, keep_alive)
        assert status == 200, bytes(data[:300])
        result = InferResult.from_response_body(bytes(data), header_length=json_size)
    else:
        from tritonclient.grpc import InferResult, service_pb2

        message = connection.call_for_message(transport.header_block, prepared.request)
        transport.connections.give_back(connection, connection.reusable)
        result = InferResult(service_pb2.ModelInferResponse.FromString(message))
    return {name: result.as_numpy(name) for name in ("score", "y")
            if result.get_output(name) is not None}


# -- answers ------------------------------------------------------------------------------

@pytest.mark.parametrize("rows", [1, 3, 512])  # 512 rows: 256 KB, past HTTP/2's 64 KB window
def test_recommender_scores_are_the_dot_products(transport, rows):
    entry = recommender(rows, seed=rows)
    (prepared,) = transport.prepare(payload("recommender", entry))
    outputs = decoded(transport, prepared)
    assert outputs["score"].shape == (rows, 1) and outputs["score"].dtype == np.float32
    np.testing.assert_allclose(outputs["score"], dot(entry), rtol=1e-5, atol=1e-4)
    # ``send``, as the users call it: the answer's size (its JSON head and 4 bytes per score
    # over HTTP, one ModelInferResponse over gRPC), the same every time.
    sizes = {transport.send(prepared) for _ in range(3)}
    assert len(sizes) == 1 and 4 * rows < sizes.pop() < 4 * rows + 400


def test_fixed_scorer_doubles_its_input(transport):
    entry = fixed(seed=5)
    (prepared,) = transport.prepare(payload("fixed_scorer", entry))
    outputs = decoded(transport, prepared)
    assert outputs["y"].shape == (4,) and outputs["y"].dtype == np.float32  # no batch dim
    np.testing.assert_array_equal(outputs["y"], entry["x"] * np.float32(2))  # exact in FP32


def test_http_answers_are_chunked_and_the_connection_is_kept(kserve_peer):
    # kserve sends binary answers chunked, with no Content-Length; the reader must keep the
    # connection alive across them, as with Triton's Content-Length answers.
    transport = make_transport("http", target_of(kserve_peer))
    try:
        (prepared,) = transport.prepare(payload("recommender", recommender(3)))
        sock = transport.connections.get()
        sock.sendall(prepared.request)
        status, length, chunked, keep_alive, json_size, start = read_head(sock)
        assert (status, length, chunked, keep_alive) == (200, None, True, True)
        assert json_size is not None  # the binary extension's Inference-Header-Content-Length
        read_body(sock, status, length, chunked, keep_alive, json_size, start)
        transport.connections.give_back(sock, keep_alive)
        for _ in range(50):
            transport.send(prepared)
        assert transport.connections.idle == [sock]  # the same connection all along
    finally:
        transport.close()


def test_a_large_answer_in_one_chunk_arrives_whole(kserve_peer):
    # kserve sends an answer as one chunk however large (here 80 KB: 0x13922 bytes), which
    # the reader receives in place rather than growing a buffer 64 KB at a time. The request
    # is 10 MB, which kserve's REST server takes about 0.9 s to read.
    transport = make_transport("http", target_of(kserve_peer))
    try:
        entry = recommender(20000, integral=True)
        (prepared,) = transport.prepare(payload("recommender", entry))
        np.testing.assert_array_equal(decoded(transport, prepared)["score"], dot(entry))
    finally:
        transport.close()


def test_chunks_of_any_size_are_read_whole_and_in_order():
    # kserve's framing replayed over loopback TCP (not a Unix socket pair: a large answer is
    # received with SO_RCVLOWAT at 1 MB, which a Unix socket's small buffer never reaches),
    # with chunks on both sides of the in-place threshold (64 KB), read by both consumers: a
    # body (infer) and events (SSE).
    import gevent
    from gevent import socket as gsocket

    from tritonload.wire.http import read_chunked

    # Every chunk stays under 1 MB: above it, SO_RCVLOWAT waits for 1 MB queued, and with the
    # sender a greenlet of this process that wait hung the whole suite (after ~600 other
    # tests; alone it passed). A separate server (tests/engine's 29 MB answers) is unaffected.
    sizes = [1, 70_000, 5, 900_000, 65_536, 65_540]
    chunks = [bytes([i]) * size for i, size in enumerate(sizes, 1)]
    framed = b"".join(b"%x\r\n" % len(c) + c + b"\r\n" for c in chunks) + b"0\r\n\r\n"
    for on_chunk in (None, []):
        with gsocket.create_server(("127.0.0.1", 0)) as server:
            ours = gsocket.create_connection(server.getsockname(), timeout=10)
            theirs, _ = server.accept()
        try:
            sender = gevent.spawn(theirs.sendall, framed)
            body = read_chunked(ours, b"", None if on_chunk is None else on_chunk.append)
            sender.join(timeout=10)
            if on_chunk is None:
                assert bytes(body) == b"".join(chunks)
            else:
                assert body == b"" and on_chunk == chunks
                assert all(type(c) is bytes for c in on_chunk)
        finally:
            ours.close()
            theirs.close()

# -- sync and async modes, with --validate -------------------------------------------------

def validated(count: int) -> tuple[Payload, Payload]:
    """Both models' payloads with exact ``validation_data``, one entry per request seed."""
    users = [recommender(4, seed=s, integral=True) for s in range(count)]
    xs = [fixed(seed=s) for s in range(count)]
    return (payload("recommender", *users, validation=tuple({"score": dot(e)} for e in users)),
            payload("fixed_scorer", *xs, validation=tuple({"y": e["x"] * np.float32(2)}
                                                          for e in xs)))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_sync_mode_validates_every_answer_on_one_connection(kserve_peer, protocol):
    transport = make_transport(protocol, target_of(kserve_peer, "sync"))
    try:
        prepared = [p for model in validated(5) for p in transport.prepare(model)]
        for request in prepared * 4:  # --validate: send raises OutputMismatch on a wrong one
            assert transport.send(request) > 0
        assert len(transport.connections.idle) == 1
    finally:
        transport.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_async_mode_senders_each_get_their_own_answer(kserve_peer, protocol):
    # Eight greenlets share the transport, as an async user's senders do; every answer is
    # validated against its own request's expected outputs, so crossed answers would fail.
    transport = make_transport(protocol, target_of(kserve_peer, "async"))
    try:
        prepared = [p for model in validated(8) for p in transport.prepare(model)]
        failures = []

        def sender(offset: int) -> None:
            for i in range(25):
                try:
                    transport.send(prepared[(offset + i) % len(prepared)])
                except Exception as exc:  # noqa: BLE001 - collected, reported below
                    failures.append(f"{classify(exc)}: {message_of(exc)}")

        pool = Pool(8)
        for offset in range(8):
            pool.spawn(sender, offset)
        pool.join(timeout=60, raise_error=True)
        assert failures == []
        assert 1 <= len(transport.connections.idle) <= 8  # one per request in flight at most
    finally:
        transport.close()


def test_validate_reports_a_wrong_answer_as_output_mismatch(transport):
    entry = fixed(seed=2)
    wrong = {"y": entry["x"] * np.float32(3)}
    (prepared,) = transport.prepare(payload("fixed_scorer", entry, validation=(wrong,)))
    with pytest.raises(OutputMismatch, match="differs from validation_data") as info:
        transport.send(prepared)
    assert classify(info.value) == "output_mismatch"
    users = recommender(2, integral=True)
    short = {"score": dot(users)[:1]}  # one score where the answer has two
    (prepared,) = transport.prepare(payload("recommender", users, validation=(short,)))
    with pytest.raises(OutputMismatch, match="shape"):
        transport.send(prepared)
    assert len(transport.connections.idle) == 1  # the answers were fine: connection kept


# -- errors --------------------------------------------------------------------------------

ERRORS = {  # a request the peer refuses: (model, entry, kind, words of its message)
    "unknown model": ("no_such_model", fixed(), "model_not_found", "does not exist"),
    "wrong shape": ("recommender", {"user_features": np.ones((3, 8), np.float32),
                                    "item_features": np.ones((3, 8), np.float32)},
                    "invalid_input", "expected FP32 [-1, 64], got [3, 8]"),
    "wrong datatype": ("fixed_scorer", {"x": np.arange(4, dtype=np.int32)}, "invalid_input",
                       "expected FP32 [4]"),
    # No binary tensor at all, so an all-JSON body over HTTP: kserve reads it as JSON only
    # with Content-Type application/json, and otherwise answered "received byte inputs, but
    # the 'inference-header-content-length' header is missing" instead of the real error.
    "no inputs": ("fixed_scorer", {}, "invalid_input", "input 'x': expected FP32 [4], got None"),
}
STATUSES = {"http": {"model_not_found": "404", "invalid_input": "400"},
            "grpc": {"model_not_found": "StatusCode.NOT_FOUND",
                     "invalid_input": "StatusCode.INVALID_ARGUMENT"}}


@pytest.mark.parametrize("case", ERRORS)
def test_a_refused_request_is_classified_promptly_and_the_connection_survives(transport, case):
    model, entry, kind, says = ERRORS[case]
    (bad,) = transport.prepare(payload(model, entry))
    (good,) = transport.prepare(payload("fixed_scorer", fixed()))
    transport.send(good)
    for _ in range(2):
        started = time.monotonic()
        with pytest.raises(Exception) as info:
            transport.send(bad)
        assert time.monotonic() - started < PROMPT_S
        assert classify(info.value) == kind, message_of(info.value)
        assert says in message_of(info.value)
        assert status_of(info.value) == STATUSES[transport.protocol][kind]
        assert transport.send(good) > 0
    assert len(transport.connections.idle) == 1  # error answers end cleanly: no reconnect


def test_a_grpc_request_over_the_servers_message_limit_is_resource_exhausted(kserve_peer):
    # kserve's gRPC server takes messages up to 8 MiB; it answers a larger one while the
    # client is still sending it (flow control), and the next call must still work.
    transport = make_transport("grpc", target_of(kserve_peer))
    try:
        rows = 8 * 2**20 // (2 * FEATURES * 4) + 16
        big = {name: np.ones((rows, FEATURES), np.float32)
               for name in ("user_features", "item_features")}
        (prepared,) = transport.prepare(payload("recommender", big))
        started = time.monotonic()
        with pytest.raises(Exception) as info:
            transport.send(prepared)
        assert time.monotonic() - started < PROMPT_S
        assert classify(info.value) == "resource_exhausted", message_of(info.value)
        (small,) = transport.prepare(payload("recommender", recommender(2)))
        assert transport.send(small) > 0
    finally:
        transport.close()


def test_an_answer_slower_than_the_timeout_is_a_timeout():
    with start_peer(delay_ms=500) as slow:
        for protocol in PROTOCOLS:
            transport = make_transport(protocol, target_of(slow, timeout_s=0.1))
            try:
                (prepared,) = transport.prepare(payload("fixed_scorer", fixed()))
                for _ in range(2):
                    started = time.monotonic()
                    with pytest.raises(Exception) as info:
                        transport.send(prepared)
                    assert time.monotonic() - started < 1.0
                    assert classify(info.value) == "timeout", (protocol, message_of(info.value))
            finally:
                transport.close()


def test_streams_kserve_lacks_fail_classified(kserve_peer):
    # ModelStreamInfer (decoupled models over gRPC) is UNIMPLEMENTED in kserve 0.21, and HTTP's
    # generate_stream is Triton's extension: both must fail at once, as errors of a kind.
    from tritonload.wire.sse import HttpGenerateTransport

    grpc = make_transport("grpc", target_of(kserve_peer))
    http = HttpGenerateTransport(target_of(kserve_peer))
    try:
        (prepared,) = grpc.prepare(payload("fixed_scorer", fixed()))
        with pytest.raises(Exception) as info:
            grpc.stream(prepared)
        assert status_of(info.value) == "StatusCode.UNIMPLEMENTED"
        assert classify(info.value) == "server_error"
        assert grpc.send(prepared) > 0 and len(grpc.connections.idle) == 1
        prompt = {"text_input": np.array([b"hello"], dtype=object)}
        (generation,) = http.prepare(Payload("fixed_scorer", (prompt,), (), "test"))
        with pytest.raises(Exception) as info:
            http.stream(generation)
        assert status_of(info.value) == "404" and classify(info.value) in ERROR_KINDS
    finally:
        grpc.close()
        http.close()


# -- the pre-flight access check -----------------------------------------------------------

@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("model", ["recommender", "fixed_scorer"])
def test_the_access_check_lets_the_peer_through(kserve_peer, protocol, model):
    # It sends an inference with no inputs and stops only on auth, TLS or an unreachable
    # server. kserve refuses it as invalid input (HTTP: 400 at parsing, tritonclient's
    # all-JSON body has no Content-Type; gRPC: INVALID_ARGUMENT from the model's own check,
    # so over gRPC the request does reach the model's predict, unlike Triton's).
    from tritonload.triton.access import check_access

    check_access(replace(target_of(kserve_peer), timeout_s=10.0), protocol, model)

