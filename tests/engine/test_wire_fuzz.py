"""Property tests of the wire clients against peers that misbehave in generated ways.

Hypothesis (derandomized, no example database: every run tries the same examples) drives:

* the HTTP/1.1 response reader (``http._read_response``) over a socket pair holding valid
  responses (random status, headers, bodies, Content-Length / chunked / close-delimited
  framing, interim 1xx answers, reads split anywhere), the same truncated at every point,
  and random byte soup; the stream then ends (EOF) or stalls;
* `HttpTransport` against a scripted HTTP/1.1 server, and `GrpcTransport` against h2 (an
  independent HTTP/2 implementation, `tests.engine.h2_peer`) scripted to answer, fail or
  misbehave: RST_STREAM, GOAWAY, frames on other streams (an earlier one, or the next call's
  before it was opened), DATA before HEADERS, PING and SETTINGS mid-answer, padding,
  malformed frames, grpc-status non-zero or garbage or missing, a gRPC length prefix that
  disagrees with the message, truncation then close, reset or stall.

What every call must do, whatever the peer sends:

* Return the right answer: the one the peer framed for this call. Calls are tagged: the
  request of call ``n`` carries ``n`` and a well-behaved answer to it is ``answer_size(n)``
  bytes, so an answer read on the wrong call (a stale or early answer on a reused
  connection) shows as a wrong size.
* Or raise, within its timeout plus `SLACK`, an error `classify` places. Precisely: when the
  exchange itself fails (bytes that are not HTTP, a truncated answer, a closed or reset
  connection, a broken HTTP/2 frame, a stall), the error classifies as ``unavailable`` or
  ``timeout`` (which one is asserted: a stall is a timeout). When the peer answered with a
  status (HTTP status other than 200, gRPC status other than OK, a reset stream, a GOAWAY,
  an answer without grpc-status), the error carries that status (``status_of``) and, for
  gRPC, its message, so `classify` treats it like Triton's own answers: it is never
  ``other`` for the statuses the taxonomy names. The statuses it does not name (HTTP 204,
  3xx, 401, 403, 418; gRPC PERMISSION_DENIED, UNAUTHENTICATED, ...) classify as ``other``
  by the taxonomy's choice (core/errors.py), so for them only the status is checked.
* Never hang: every call runs under a hard `gevent.Timeout` raising `Hung`, which no
  assertion accepts.

Peers: the scripted servers are threads on plain sockets; the clients use gevent sockets in
this (unpatched) process, as the transports always do (`tritonload.wire.sockets`).
"""

from __future__ import annotations

import socket
import string
import struct
import threading
import time
from dataclasses import dataclass
from urllib.parse import quote

import gevent
import grpc
import h2.settings
import hpack
import pytest
from gevent import socket as gsocket
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.engine.h2_peer import OK_HEADERS, Peer
from tritonload.core.config import Target
from tritonload.core.errors import classify, status_of
from tritonload.wire.grpc import GrpcTransport
from tritonload.wire.grpc_wire import GrpcConnection, encode_headers, grpc_message
from tritonload.wire.http import HttpTransport, _read_response, request_head
from tritonload.wire.prepared import Prepared

READ_TIMEOUT_S = 0.02  # the reader over a socket pair: nothing is in flight
WIRE_TIMEOUT_S = 0.6  # the transports against a peer thread (0.2 s timed out under CI load)
SLACK = 1.0  # a loaded machine's scheduling delays, on top of a timeout
HARD_S = 10.0  # a call still running after this hangs

EXCHANGE_KINDS = ("unavailable", "timeout")
HTTP_UNNAMED = {204, 301, 304, 401, 403, 418}
GRPC_UNNAMED = {"ALREADY_EXISTS", "PERMISSION_DENIED", "FAILED_PRECONDITION", "ABORTED",
                "OUT_OF_RANGE", "DATA_LOSS", "UNAUTHENTICATED"}


class Hung(AssertionError):
    """A call ran past `HARD_S`."""


def fuzz(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def answer_size(n: int) -> int:
    """The size of a well-behaved answer to call ``n``: each call's answer is its own."""
    return 100 + n


@dataclass(frozen=True)
class Expect:
    """What a call must do: return ``value``, fail as ``kind``, or fail with ``status``."""

    value: object = None
    kind: str | None = None
    status: str | None = None
    message: str | None = None


def outcome(call) -> tuple[bool, object, float]:
    """``(returned, value or exception, seconds)`` of one call, bounded by `HARD_S`."""
    start = time.monotonic()
    try:
        with gevent.Timeout(HARD_S, Hung(f"the call ran past {HARD_S} s")):
            value = call()
        return True, value, time.monotonic() - start
    except Hung:
        raise
    except Exception as exc:  # the property: any exception
        return False, exc, time.monotonic() - start


def check(result: tuple[bool, object, float], expect: Expect, timeout_s: float,
          what: str = "") -> None:
    returned, value, seconds = result
    assert seconds < timeout_s + SLACK, f"{what}: took {seconds:.2f} s"
    if expect.kind is None and expect.status is None:
        assert returned, f"{what}: raised {value!r}, expected {expect.value!r}"
        assert value == expect.value, f"{what}: returned {value!r}, expected {expect.value!r}"
        return
    assert not returned, f"{what}: returned {value!r}, expected {expect}"
    kind = classify(value)
    if expect.kind is not None:
        assert kind == expect.kind, f"{what}: {value!r} classified as {kind}, expected {expect}"
        return
    status = status_of(value).removeprefix("StatusCode.")
    assert status == expect.status, f"{what}: {value!r} has status {status!r}, expected {expect}"
    if expect.message is not None:
        assert value.details() == expect.message, f"{what}: {value!r}"
    if expect.status not in GRPC_UNNAMED and expect.status not in map(str, HTTP_UNNAMED):
        assert kind != "other", f"{what}: {value!r} is unclassified"


# -- HTTP/1.1 responses --------------------------------------------------------------------

FRAMING_FIELDS = {"content-length", "transfer-encoding", "connection"}
NAMES = st.text(string.ascii_letters + "-", min_size=1, max_size=10).filter(
    lambda name: name.lower() not in FRAMING_FIELDS).map(str.encode)
VALUES = st.text(string.ascii_letters + string.digits + " ;=,/.:\t", max_size=20).map(
    lambda value: value.strip().encode())
SPACES = st.sampled_from([b"", b" ", b"  ", b"\t"])
INTERIM = (b"HTTP/1.1 100 Continue\r\n\r\n",
           b"HTTP/1.1 103 Early Hints\r\nLink: </hints>; rel=preload\r\n\r\n")
HTTP_STATUSES = (200, 204, 301, 304, 400, 401, 403, 404, 408, 418, 429, 500, 502, 503, 504)
ERROR_STATUSES = [s for s in HTTP_STATUSES if s != 200]
SIZES = st.lists(st.integers(1, 64), max_size=6)  # how the reader's receives are split


@dataclass(frozen=True)
class Response:
    """A valid HTTP/1.1 response stream and what the reader must make of it."""

    data: bytes
    status: int
    body: bytes
    keep_alive: bool
    framing: str  # "length", "chunked", "close" (the body ends at EOF), "none" (204/304)
    body_start: int  # where the body begins in ``data``

    def parsed(self) -> tuple[int, bytes, bool]:
        return self.status, self.body, self.keep_alive


def fields(draw, extra: list[tuple[bytes, bytes]]) -> bytes:
    lines = draw(st.lists(st.tuples(NAMES, VALUES), max_size=4)) + extra
    return b"".join(name + b":" + draw(SPACES) + value + b"\r\n"
                    for name, value in draw(st.permutations(lines)))


def pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at ``cuts`` (those inside it), in order; no piece is empty."""
    cuts = sorted({c for c in cuts if 0 < c < len(data)})
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


@st.composite
def chunked(draw, body: bytes) -> bytes:
    out = b""
    for piece in pieces(body, draw(st.lists(st.integers(1, max(1, len(body))), max_size=4))):
        size = format(len(piece), draw(st.sampled_from(["x", "X", "04x"]))).encode()
        out += size + draw(st.sampled_from([b"", b";a=b", b" ;x"])) + b"\r\n" + piece + b"\r\n"
    return out + b"0\r\n" + fields(draw, []) + b"\r\n"


ANY_STATUS = st.sampled_from(HTTP_STATUSES)
ANY_BODY = st.binary(max_size=1500)
ANY_FRAMING = st.sampled_from(["length", "chunked", "close"])


@st.composite
def responses(draw, statuses=ANY_STATUS, bodies=ANY_BODY, framings=ANY_FRAMING) -> Response:
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0"]))
    status, body, framing = draw(statuses), draw(bodies), draw(framings)
    connection = draw(st.sampled_from([None, b"close", b"keep-alive", b"Keep-Alive"]))
    extra = []
    if status in (204, 304):
        body, framing = b"", "none"
    payload = body
    if framing == "length":
        name = draw(st.sampled_from([b"Content-Length", b"content-length", b"CONTENT-LENGTH"]))
        extra.append((name, b"%d" % len(body) + draw(SPACES)))
    elif framing == "chunked":
        extra.append((b"Transfer-Encoding", draw(st.sampled_from([b"chunked", b"Chunked"]))))
        payload = draw(chunked(body))
    if connection is not None:
        extra.append((b"Connection", connection))
    reason = draw(st.sampled_from([b" OK", b" Anything At All", b"", b" "]))
    head = (version + b" %d" % status + reason + b"\r\n" + fields(draw, extra) + b"\r\n")
    head = b"".join(draw(st.lists(st.sampled_from(INTERIM), max_size=2))) + head
    keep_alive = version == b"HTTP/1.1"
    if connection is not None:
        keep_alive = connection.lower() == b"keep-alive"
    if framing == "close":
        keep_alive = False
    return Response(head + payload, status, body, keep_alive, framing, len(head))


class SplitReads:
    """A socket whose receives return at most the next of ``sizes`` bytes (cycled)."""

    def __init__(self, sock: socket.socket, sizes: list[int]) -> None:
        self.sock, self.sizes, self.count = sock, sizes or [1 << 30], 0

    def _next(self, size: int) -> int:
        self.count += 1
        return min(size, self.sizes[self.count % len(self.sizes)])

    def recv(self, size: int) -> bytes:
        return self.sock.recv(self._next(size))

    def recv_into(self, view: memoryview) -> int:
        return self.sock.recv_into(view, self._next(len(view)))


def read(data: bytes, sizes: list[int], end: str) -> tuple[int, bytes, bool]:
    """`_read_response` over a socket pair holding ``data``, then EOF or a stall."""
    ours, theirs = gsocket.socketpair()
    try:
        theirs.sendall(data)  # well under the socket buffer
        if end == "close":
            theirs.shutdown(socket.SHUT_WR)
        ours.settimeout(READ_TIMEOUT_S)
        status, body, keep_alive, _ = _read_response(SplitReads(ours, sizes))
        return status, bytes(body), keep_alive
    finally:
        ours.close()
        theirs.close()


def failure(end: str) -> Expect:
    return Expect(kind="timeout" if end == "stall" else "unavailable")


@fuzz(250)
@given(response=responses(), junk=st.binary(max_size=40), sizes=SIZES,
       end=st.sampled_from(["close", "stall"]))
def test_reader_returns_a_valid_response_whole(response, junk, sizes, end):
    # Bytes after a framed response (the next answer, or junk) are not part of it.
    delimited = response.framing == "close"
    data = response.data + (b"" if delimited else junk)
    expect = failure("stall") if delimited and end == "stall" else Expect(response.parsed())
    check(outcome(lambda: read(data, sizes, end)), expect, READ_TIMEOUT_S, repr(data[:300]))


def truncated(response: Response, cut: int, end: str) -> Expect:
    """What the reader must make of ``response.data[:cut]`` then ``end``."""
    if response.framing == "close" and cut >= response.body_start:
        # A close-delimited body ends where the connection does: not a truncation.
        return failure(end) if end == "stall" else Expect(
            (response.status, response.data[response.body_start:cut], False))
    return failure(end)


@fuzz(250)
@given(response=responses(), sizes=SIZES, end=st.sampled_from(["close", "stall"]),
       data=st.data())
def test_reader_fails_a_truncated_response(response, sizes, end, data):
    cut = data.draw(st.integers(0, len(response.data) - 1), label="cut")
    check(outcome(lambda: read(response.data[:cut], sizes, end)),
          truncated(response, cut, end), READ_TIMEOUT_S, repr(response.data[:cut][-300:]))


def fixed(data: bytes, status: int, body: bytes, keep_alive: bool, framing: str) -> Response:
    return Response(data, status, body, keep_alive, framing,
                    data.index(b"\r\n\r\n", data.rindex(b"HTTP/")) + 4)


FIXED = {  # one response per framing, and what the reader makes of each whole
    "length": fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello", 200,
                    b"hello", True, "length"),
    "chunked": fixed(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 400 Bad Request\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n1\r\n!\r\n"
                     b"0\r\nT: 1\r\n\r\n", 400, b"hello!", True, "chunked"),
    "close": fixed(b"HTTP/1.0 200 OK\r\nServer: s\r\n\r\nclose-delimited", 200,
                   b"close-delimited", False, "close"),
}


@pytest.mark.parametrize("framing", FIXED)
def test_reader_fails_every_truncation_of_a_response(framing):
    response = FIXED[framing]
    check(outcome(lambda: read(response.data, [], "close")), Expect(response.parsed()),
          READ_TIMEOUT_S)
    for cut in range(len(response.data)):
        check(outcome(lambda cut=cut: read(response.data[:cut], [], "close")),
              truncated(response, cut, "close"), READ_TIMEOUT_S, repr(response.data[:cut]))


SOUP_TOKENS = st.lists(st.one_of(
    st.binary(max_size=6),
    st.sampled_from([b"HTTP/1.1 ", b"HTTP/1.0 200 OK", b"HTTP/1.1 100 Continue", b"200",
                     b" 404 ", b"\r\n", b"\r\n\r\n", b"Content-Length:", b"content-length: ",
                     b"Transfer-Encoding: chunked", b"Connection: close", b" ", b":", b";",
                     b"-1", b"+5", b"1_0", b"0x1f", b"ffffffff", b"1000000000000",
                     b"99999999999999999999", b"5", b"0\r\n\r\n", b"\xff\xfe"])),
    max_size=30).map(b"".join)
# Mostly a status line and header lines of soup, so that it reaches every parser.
SOUP_LINES = st.lists(st.tuples(
    st.sampled_from([b"Content-Length:", b"content-length: ", b"Transfer-Encoding: ",
                     b"Connection: ", b"X:", b""]),
    SOUP_TOKENS, st.just(b"\r\n")).map(b"".join), max_size=3).map(b"".join)
SOUP = st.one_of(SOUP_TOKENS, st.tuples(
    st.sampled_from([b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 500 E\r\n", b"HTTP/1.0 200\r\n"]),
    SOUP_LINES, st.sampled_from([b"\r\n", b""]), SOUP_TOKENS).map(b"".join))


@fuzz(250)
@given(soup=SOUP, sizes=SIZES, end=st.sampled_from(["close", "close", "stall"]))
@example(soup=b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n", sizes=[],
         end="close")  # OverflowError, when the body's buffer was allocated up front
@example(soup=b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\n\r\nab", sizes=[],
         end="close")  # MemoryError, likewise
@example(soup=b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nab", sizes=[], end="close")
@example(soup=b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\nab", sizes=[],
         end="close")
def test_reader_on_byte_soup_returns_or_fails_classified(soup, sizes, end):
    returned, value, seconds = outcome(lambda: read(soup, sizes, end))
    assert seconds < READ_TIMEOUT_S + SLACK
    if returned:  # then the soup happened to be a valid response: its size is what it says
        status, body, keep_alive = value
        assert 200 <= status <= 999 and isinstance(body, bytes) and isinstance(keep_alive, bool)
    else:
        assert classify(value) in EXCHANGE_KINDS, repr(value)


# -- scripted servers on 127.0.0.1 ---------------------------------------------------------

class Listener:
    """A TCP listener on 127.0.0.1 that hands each accepted socket to ``serve``."""

    def __init__(self, serve) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.serve, self.closing = serve, False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            sock, _ = self.sock.accept()
            if self.closing:
                sock.close()
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as Triton's server
            self.serve(sock)

    def close(self) -> None:
        self.closing = True
        socket.create_connection(("127.0.0.1", self.port)).close()  # wakes accept()
        self.thread.join(5)
        self.sock.close()


def end_connection(sock: socket.socket, end: str) -> None:
    """After the answer: keep serving, or close, reset or stall (until the client closes)."""
    if end == "reset":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    elif end == "close":
        sock.shutdown(socket.SHUT_WR)


@dataclass(frozen=True)
class HttpAnswer:
    """The bytes the server writes for one call, how it then ends, what the call must do."""

    data: bytes
    end: str
    expect: Expect


@st.composite
def http_answers(draw, n: int) -> HttpAnswer:
    body = b"x" * answer_size(n)
    choice = draw(st.sampled_from(["ok", "ok", "status", "cut", "garbage", "junk"]))
    if choice in ("ok", "junk"):
        framings = ["length", "chunked"] + (["close"] if choice == "ok" else [])
        response = draw(responses(st.just(200), st.just(body), st.sampled_from(framings)))
        data, end = response.data, "close" if response.framing == "close" else "keep"
        if choice == "junk":  # a second answer nobody asked for, tagged as this call's
            data += b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        return HttpAnswer(data, end, Expect(answer_size(n)))
    if choice == "status":
        message = draw(st.text(string.ascii_letters + " '", max_size=30))
        error = b'{"error": "%s"}' % message.encode()
        response = draw(responses(st.sampled_from(ERROR_STATUSES), st.just(error)))
        end = "close" if response.framing == "close" else "keep"
        return HttpAnswer(response.data, end, Expect(status=str(response.status)))
    if choice == "cut":
        response = draw(responses(bodies=st.just(body),
                                  framings=st.sampled_from(["length", "chunked"])))
        cut = draw(st.integers(0, len(response.data) - 1))
        end = draw(st.sampled_from(["close", "reset", "stall"]))
        return HttpAnswer(response.data[:cut], end, failure(end))
    return HttpAnswer(b"X" + draw(st.binary(max_size=200)), "close", failure("close"))


class HttpServer:
    """Answers the request whose body is ``n`` with ``answers[n]``, one thread per connection."""

    def __init__(self, answers: list[HttpAnswer]) -> None:
        self.answers, self.threads = answers, []
        self.listener = Listener(self._start)

    def _start(self, sock: socket.socket) -> None:
        self.threads.append(threading.Thread(target=self._serve, args=(sock,), daemon=True))
        self.threads[-1].start()

    def _serve(self, sock: socket.socket) -> None:
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    if not (chunk := sock.recv(65536)):
                        return
                    buf += chunk
                head, _, buf = buf.partition(b"\r\n\r\n")
                length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                while len(buf) < length:
                    if not (chunk := sock.recv(65536)):
                        return
                    buf += chunk
                answer = self.answers[int(buf[:length])]
                buf = buf[length:]
                sock.sendall(answer.data)
                if answer.end != "keep":
                    end_connection(sock, answer.end)
                    while sock.recv(65536):  # until the client closes
                        pass
                    return
        except OSError:
            pass
        finally:
            sock.close()

    def close(self) -> None:
        self.listener.close()
        for thread in self.threads:
            thread.join(5)
            assert not thread.is_alive(), "a connection the client never closed"


@st.composite
def http_calls(draw) -> list[HttpAnswer]:
    return [draw(http_answers(n)) for n in range(draw(st.integers(1, 5)))]


@fuzz(60)
@given(answers=http_calls())
def test_http_transport_answers_each_call_or_fails_classified(answers):
    server = HttpServer(answers)
    transport = HttpTransport(Target(host="127.0.0.1", http_port=server.listener.port,
                                     grpc_port=None, timeout_s=WIRE_TIMEOUT_S))
    try:
        for n, answer in enumerate(answers):
            body = b"%d" % n
            request = request_head("/v2/models/m/infer", "peer", {}, len(body), None) + body
            check(outcome(lambda request=request: transport.send(Prepared("m", request, 1))),
                  answer.expect, WIRE_TIMEOUT_S, f"call {n}: {answer}")
    finally:
        transport.close()
        server.close()


# -- gRPC against h2 -----------------------------------------------------------------------

def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    """One raw HTTP/2 frame (RFC 9113 §4.1), however wrong its payload."""
    return struct.pack(">I B I", len(payload) << 8 | kind, flags, stream) + payload


DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0, 1, 3, 4, 6, 7, 8
END_STREAM, END_HEADERS, PADDED = 0x1, 0x4, 0x8


def block(*fields: tuple[str, str]) -> bytes:
    """A header block that leaves no HPACK state, as h2's own blocks do for this client."""
    return hpack.Encoder().encode([hpack.NeverIndexedHeaderTuple(n, v) for n, v in fields])


def raw_answer(stream: int, size: int) -> bytes:
    """A whole well-formed answer of ``size`` bytes on ``stream``, written around h2."""
    return (frame(HEADERS, END_HEADERS, stream, block(*OK_HEADERS))
            + frame(DATA, 0, stream, grpc_message(b"s" * size))
            + frame(HEADERS, END_HEADERS | END_STREAM, stream, block(("grpc-status", "0"))))


MALFORMED = {
    "short RST_STREAM": lambda s: frame(RST_STREAM, 0, s, b"\x00\x07"),
    "short WINDOW_UPDATE": lambda s: frame(WINDOW_UPDATE, 0, 0, b"\x00\x01"),
    "empty stream WINDOW_UPDATE": lambda s: frame(WINDOW_UPDATE, 0, s),
    "short GOAWAY": lambda s: frame(GOAWAY, 0, 0, b"\x00\x00\x00"),
    "SETTINGS of 5 bytes": lambda s: frame(SETTINGS, 0, 0, b"\x00\x04\x00\x00\x00"),
    "PING of 3 bytes": lambda s: frame(PING, 0, 0, b"abc"),
    "padding past the DATA": lambda s: frame(DATA, PADDED, s, b"\x32xy"),
    "padded empty DATA": lambda s: frame(DATA, PADDED, s),
    "padding past the HEADERS": lambda s: frame(HEADERS, END_HEADERS | PADDED, s, b"\x09ab"),
    "bad HPACK": lambda s: frame(HEADERS, END_HEADERS, s, b"\xff\xff\xff\xff\xff"),
    "HEADERS cut by DATA": lambda s: (frame(HEADERS, 0, s, block(*OK_HEADERS))
                                      + frame(DATA, 0, s, b"x")),
}
GRPC_CODES = [str(code) for code in range(1, 17)] + ["99", "abc", "", "-3", "1x"]


@dataclass(frozen=True)
class GrpcAnswer:
    """What the peer does for one call (steps run against h2 and the raw socket), how the
    connection then ends (optionally cut at ``cut``/1000 of the bytes), what the call must do.
    """

    steps: tuple
    expect: Expect
    end: str = "keep"
    cut: int | None = None


@st.composite
def grpc_answers(draw, n: int) -> GrpcAnswer:
    size = answer_size(n)
    message = grpc_message(b"r" * size)
    parts = pieces(message, draw(st.lists(st.integers(1, size), max_size=3)))
    pads = [draw(st.sampled_from([0, 0, 1, 17])) for _ in parts]
    body = [("data", part, pad) for part, pad in zip(parts, pads, strict=True)]
    extras = [("x-extra", "1")] if draw(st.booleans()) else []
    old = ("old", answer_size(n - 1))  # a late answer to the previous call
    pre = draw(st.lists(st.sampled_from(
        [("ping",), ("window",), ("settings", 3), ("settings", 65535), old, ("goaway", 0)]),
        max_size=2))
    choice = draw(st.sampled_from(
        ["ok", "ok", "ok", "status", "no status", "reset", "goaway", "prefix", "malformed",
         "cut"]))
    if choice == "ok":
        if draw(st.booleans()):  # DATA before HEADERS
            body[0] = ("raw data", parts[0])
        post = draw(st.lists(st.sampled_from([("ping",), old, ("future", size), ("goaway", 0)]),
                             max_size=2))
        headers = [("headers",)]
        steps = (*pre, *(headers + body if body[0][0] == "data" else body[:1] + headers
                         + body[1:]), ("trailers", [("grpc-status", "0"), *extras]), *post)
        return GrpcAnswer(steps, Expect(size))
    if choice == "status" or (choice == "cut" and draw(st.booleans())):
        code = draw(st.sampled_from(GRPC_CODES))
        text = draw(st.text(string.ascii_letters + " %'é", max_size=20))
        trailers = [("grpc-status", code), ("grpc-message", quote(text, safe="")), *extras]
        steps = ((*pre, ("trailers only", trailers)) if draw(st.booleans())
                 else (*pre, ("headers",), *body, ("trailers", trailers)))
        name = ("UNKNOWN" if not code.isdigit() or not 0 < int(code) <= 16
                else next(c.name for c in grpc.StatusCode if c.value[0] == int(code)))
        expect = Expect(status=name, message=text)
    elif choice == "no status":
        ending = draw(st.sampled_from([("end stream",), ("trailers", extras or [("x", "y")])]))
        steps = (*pre, ("headers",), *body, ending)
        if draw(st.booleans()):
            steps = (*pre, ("trailers only", []))
        expect = Expect(status="UNKNOWN")
    elif choice in ("reset", "cut"):
        code = draw(st.integers(0, 13))
        steps = (*pre, ("headers",), *body[:draw(st.integers(0, len(body)))], ("reset", code))
        expect = Expect(status="UNAVAILABLE" if code == 7 else "INTERNAL")
    elif choice == "goaway":
        steps = (*pre, *([("headers",)] if draw(st.booleans()) else []), ("goaway", -2))
        expect = Expect(status="UNAVAILABLE")
    elif choice == "prefix":
        wrong = draw(st.sampled_from(["longer", "shorter", "none", "two", "stub"]))
        if wrong in ("longer", "shorter"):
            declared = size + draw(st.integers(1, 50)) * (1 if wrong == "longer" else -1)
            data = [("data", b"\x00" + struct.pack(">I", declared) + b"r" * size, 0)]
        else:
            data = {"none": [], "two": [("data", message + message, 0)],
                    "stub": [("data", b"\x00\x00\x00", 0)]}[wrong]
        steps = (*pre, ("headers",), *data, ("trailers", [("grpc-status", "0")]))
        expect = Expect(status="INTERNAL")
    else:  # malformed
        bad = draw(st.sampled_from(sorted(MALFORMED)))
        steps = (*pre, ("headers",), ("malformed", bad), *body,
                 ("trailers", [("grpc-status", "0")]))
        return GrpcAnswer(steps, Expect(kind="unavailable"))
    if choice != "cut":
        return GrpcAnswer(steps, expect)
    end = draw(st.sampled_from(["close", "reset", "stall"]))
    return GrpcAnswer(steps, failure(end), end, draw(st.integers(0, 999)))


class FuzzPeer(Peer):
    """An h2 peer on an accepted socket answering call ``n`` as ``answers[n]`` says."""

    def __init__(self, sock: socket.socket, answers: list[GrpcAnswer]) -> None:
        self.answers, self.went_away = answers, False
        super().__init__(sock=sock)

    def respond(self, stream: int, body: bytes) -> None:
        assert not self.went_away, "the client opened a stream after the peer's GOAWAY"
        answer = self.answers[int(body[5:])]
        conn, out = self.conn, bytearray()
        for step, *args in answer.steps:
            out += conn.data_to_send()  # h2's bytes so far, before any raw frame
            if step == "headers":
                conn.send_headers(stream, OK_HEADERS)
            elif step == "data":
                conn.send_data(stream, args[0], pad_length=args[1] or None)
            elif step == "raw data":
                out += frame(DATA, 0, stream, args[0])
            elif step == "trailers":
                conn.send_headers(stream, args[0], end_stream=True)
            elif step == "trailers only":
                conn.send_headers(stream, OK_HEADERS + args[0], end_stream=True)
            elif step == "end stream":
                conn.end_stream(stream)
            elif step == "ping":
                conn.ping(b"fuzzping")
            elif step == "window":
                conn.increment_flow_control_window(1000)
            elif step == "settings":
                conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: args[0]})
            elif step == "reset":
                conn.reset_stream(stream, error_code=args[0])
            elif step == "goaway":  # raw: h2 would refuse to answer after its own GOAWAY
                last = max(0, stream + args[0])
                out += frame(GOAWAY, 0, 0, struct.pack(">II", last, 0) + b"fuzz")
                self.went_away = True
            elif step == "old" and stream > 2:  # a late answer to the previous call
                out += raw_answer(stream - 2, args[0])
            elif step == "future":  # an answer for the next call, before it was asked
                out += raw_answer(stream + 2, args[0])
            elif step == "malformed":
                out += MALFORMED[args[0]](stream)
        out += conn.data_to_send()
        if answer.cut is not None:
            out = out[:len(out) * answer.cut // 1000]
        self.sock.sendall(out)
        if answer.end != "keep":
            self.ignoring = True
            end_connection(self.sock, answer.end)


@st.composite
def grpc_calls(draw) -> list[GrpcAnswer]:
    return [draw(grpc_answers(n)) for n in range(draw(st.integers(1, 5)))]


@fuzz(80)
@given(answers=grpc_calls())
def test_grpc_transport_answers_each_call_or_fails_classified(answers):
    peers: list[FuzzPeer] = []
    listener = Listener(lambda sock: peers.append(FuzzPeer(sock, answers)))
    transport = GrpcTransport(Target(host="127.0.0.1", http_port=None, grpc_port=listener.port,
                                     timeout_s=WIRE_TIMEOUT_S))
    try:
        for n, answer in enumerate(answers):
            request = Prepared("m", grpc_message(b"%d" % n), 1)
            check(outcome(lambda request=request: transport.send(request)), answer.expect,
                  WIRE_TIMEOUT_S, f"call {n}: {answer}")
    finally:
        transport.close()
        listener.close()
        for peer in peers:
            peer.close()  # also fails on any HTTP/2 violation by the client


@fuzz(120)
@given(settings_frame=st.one_of(st.none(), st.lists(
           st.tuples(st.integers(0, 9), st.integers(0, 2**32 - 1)), max_size=4)),
       tail=st.binary(max_size=60), end=st.sampled_from(["close", "close", "stall"]))
def test_grpc_connection_on_a_peer_that_is_not_http2(settings_frame, tail, end):
    # The server's preface: none, or a SETTINGS frame of random values, then random bytes.
    data = b""
    if settings_frame is not None:
        data = frame(SETTINGS, 0, 0, b"".join(struct.pack(">HI", k, v)
                                              for k, v in settings_frame))
    ours, theirs = gsocket.socketpair()
    try:
        theirs.sendall(data + tail)
        if end == "close":
            theirs.shutdown(socket.SHUT_WR)
        ours.settimeout(READ_TIMEOUT_S)

        def call() -> int:
            connection = GrpcConnection(ours)
            return connection.call(encode_headers("/p", "a", {}, None), grpc_message(b"q"))

        returned, value, seconds = outcome(call)
        assert seconds < READ_TIMEOUT_S * 3 + SLACK
        assert not returned, value  # random bytes never make a whole answer
        assert classify(value) in EXCHANGE_KINDS or status_of(value), repr(value)
        if status_of(value):
            assert classify(value) != "other", repr(value)
    finally:
        ours.close()
        theirs.close()
