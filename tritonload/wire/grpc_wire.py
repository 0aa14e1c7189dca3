"""A lean gRPC client connection: unary calls over HTTP/2 on a gevent socket.

Why not grpcio: under gevent (``grpc.experimental.gevent``) every blocking wait of a grpcio
call is handed to gevent's thread pool, which costs about 500 µs of client CPU per request
on this machine, against about 140 µs for perf_analyzer's C++ client; on 2 shared cores that
CPU is taken from the server, so throughput fell to 0.68x perf_analyzer's. And h2, the pure
Python HTTP/2 stack, costs about as much (~450 µs). A unary ModelInfer needs only a small
part of HTTP/2 (RFC 9113) and of gRPC's HTTP/2 mapping, which this module speaks directly:

* One stream in flight per connection: the transport pools connections, one per request in
  flight (as for HTTP/1.1), so the calling greenlet reads its own answer; nothing to
  demultiplex, no reader greenlet.
* Request headers are encoded once (hpack, never-indexed literals: no encoder state), and
  the request frames are plain bytes with the stream id written in.
* We announce a header table size of 0, so the server's header blocks carry no table state
  and each distinct block is decoded once (hpack's decoder) and then looked up.
* Flow control: we announce the largest windows, so the server never waits for us (the
  connection window is topped up as data arrives); our own sends respect the server's
  windows and frame size, reading its WINDOW_UPDATEs while they wait.
* SETTINGS are acknowledged, PINGs answered; RST_STREAM and GOAWAY fail the call.
* Between calls, `GrpcConnection.settle` reads what the server sent meanwhile (a PING, a
  GOAWAY, a late frame of an ended stream) before the connection carries the next call.

What the server sends is checked where a mistake would give a wrong answer or an
unclassified error (tests/engine/test_wire_fuzz.py drives this module against a misbehaving
h2 peer): a malformed frame (a payload too short for its type, padding longer than the
frame, an undecodable header block, a PING that is not 8 bytes) is a `GrpcProtocolError`, as
is a frame for a stream not opened yet; the answer must be exactly one gRPC message whose
length prefix is right; a grpc-status that is not a number is UNKNOWN. Before those checks, a
frame for the next stream id sent after an answer was read as the next call's answer, a
GOAWAY read after an answer let the connection carry (and fail) one more call, a short
SETTINGS or a bad grpc-status raised struct.error or ValueError, a 3-byte PING was echoed
(itself an HTTP/2 violation), and an answer with no message returned 0 bytes.

The response message is counted, not kept: the load generator records its size only.
`GrpcConnection.call_for_message` keeps it, for ``--validate``, which decodes the outputs.

`GrpcConnection.stream_call` is a ModelStreamInfer call carrying one request, for a decoupled
model (an LLM's tokens): the request is sent and the client's side of the stream closed at
once, and Triton answers with one ModelStreamInferResponse message per response, then the
trailers once the last one is sent. Each message is timed when the frame that completes it
has been read (`StreamAnswer.arrivals_ns`), not when the call ends, so a token's time is its
arrival; the messages themselves are kept only when asked.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Mapping

import grpc
import hpack

from tritonload.wire.prepared import StreamAnswer
from tritonload.wire.sockets import TlsRefused, fresh_tls, peek_idle, receive_exactly

_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_FRAME = struct.Struct(">I B I")  # (length << 8 | type), flags, stream id; 9 bytes
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = (
    0x0, 0x1, 0x3, 0x4, 0x6, 0x7, 0x8, 0x9)
END_STREAM = ACK = 0x1
END_HEADERS, PADDED, PRIORITY = 0x4, 0x8, 0x20
_HEADER_TABLE_SIZE, _ENABLE_PUSH, _INITIAL_WINDOW, _MAX_FRAME = 0x1, 0x2, 0x4, 0x5
_MAX_WINDOW = 2**31 - 1
_READ = 256 * 1024
_STATUS_NAMES = {code.value[0]: code for code in grpc.StatusCode}
# What a frame too short for its type, or a header block hpack cannot decode, raises.
_MALFORMED = (struct.error, hpack.HPACKError)


def _frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return _FRAME.pack(len(payload) << 8 | kind, flags, stream) + payload


def _settings(*pairs: tuple[int, int]) -> bytes:
    return b"".join(struct.pack(">HI", key, value) for key, value in pairs)


class GrpcStatusError(grpc.RpcError):
    """A call that ended with a non-OK grpc-status (or a reset stream), like grpcio's error."""

    def __init__(self, status: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{status.name}: {message}")
        self._status, self._message = status, message

    def code(self) -> grpc.StatusCode:
        """The gRPC status code."""
        return self._status

    def details(self) -> str:
        """The server's message."""
        return self._message


class GrpcProtocolError(ConnectionError):
    """The peer broke HTTP/2 or closed the connection mid-call."""


def encode_headers(path: str, authority: str, metadata: Mapping[str, str],
                   timeout_s: float | None, scheme: str = "http") -> bytes:
    """One request's HPACK header block, free of any compression-table state."""
    fields = [(":method", "POST"), (":scheme", scheme), (":path", path),
              (":authority", authority), ("content-type", "application/grpc"),
              ("te", "trailers"), ("user-agent", "tritonload")]
    if timeout_s:
        fields.append(("grpc-timeout", f"{max(1, round(timeout_s * 1000))}m"))
    fields += [(name.lower(), value) for name, value in metadata.items()]
    return hpack.Encoder().encode([hpack.NeverIndexedHeaderTuple(n, v) for n, v in fields])


def grpc_message(message: bytes) -> bytes:
    """A serialized protobuf as one uncompressed gRPC length-prefixed message."""
    return b"\x00" + struct.pack(">I", len(message)) + message


class GrpcConnection:
    """One HTTP/2 connection carrying one unary call at a time."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.next_stream = 1
        self.reusable = True
        self.decoder = hpack.Decoder()
        self.blocks: dict[bytes, list[tuple[bytes, bytes]]] = {}
        # What the server allows us to send (RFC 9113 defaults until its SETTINGS arrive).
        self.send_window = 65535
        self.stream_window_initial = 65535
        self.max_frame = 16384
        self.unacked = 0  # DATA bytes received since our last connection WINDOW_UPDATE
        sock.sendall(_PREFACE
                     + _frame(SETTINGS, 0, 0, _settings(
                         (_HEADER_TABLE_SIZE, 0), (_ENABLE_PUSH, 0),
                         (_INITIAL_WINDOW, _MAX_WINDOW), (_MAX_FRAME, 2**24 - 1)))
                     + _frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", _MAX_WINDOW - 65535)))
        self._await_settings()

    def _await_settings(self) -> None:
        """Read the server's preface, a SETTINGS frame, so the first call knows its limits."""
        try:
            length, kind, flags, _ = self._frame_head()
        except (GrpcProtocolError, ConnectionResetError) as exc:
            if fresh_tls(self.sock):
                raise TlsRefused() from exc  # a mutual-TLS server refusing this client
            raise
        if kind != SETTINGS or flags & ACK or length % 6 or length > 600:
            raise GrpcProtocolError("the server did not answer with HTTP/2: is this Triton's "
                                    "gRPC port?")
        self._connection_frame(_Call(0), kind, flags, self._take(length))

    def close(self) -> None:
        """Close the socket; the connection is not reusable afterwards."""
        self.reusable = False
        self.sock.close()

    def call(self, header_block: bytes, message: bytes) -> int:
        """One unary call; returns the response message's size, raises GrpcStatusError."""
        return self._exchange(header_block, message, _Call(self._open_stream()))

    def call_for_message(self, header_block: bytes, message: bytes) -> bytes:
        """One unary call; returns the response message itself, raises GrpcStatusError."""
        call = _Call(self._open_stream(), keep=True)
        self._exchange(header_block, message, call)
        return b"".join(call.chunks)[5:]

    def stream_call(self, header_block: bytes, message: bytes, keep: bool = False
                    ) -> StreamAnswer:
        """One request on a bidirectional stream (ModelStreamInfer), read to its trailers.

        Returns every response message's arrival time and size (the messages too with
        ``keep``); raises GrpcStatusError for a non-OK grpc-status. A response that carries
        an error (the model's) does not raise: `StreamAnswer.error` says it.
        """
        call = _StreamCall(self._open_stream(), keep)
        self._exchange(header_block, message, call)
        return call.answer

    def _open_stream(self) -> int:
        stream = self.next_stream
        self.next_stream += 2
        if self.next_stream > _MAX_WINDOW:
            self.reusable = False  # stream ids exhausted: the next call opens a new connection
        return stream

    def _exchange(self, header_block: bytes, message: bytes, call: _Call) -> int:
        stream = call.stream
        head = _frame(HEADERS, END_HEADERS, stream, header_block)
        size = len(message)
        window = min(self.send_window, self.stream_window_initial)
        try:
            if size <= window and size <= self.max_frame:
                self.sock.sendall(head + _FRAME.pack(size << 8 | DATA, END_STREAM, stream)
                                  + message)
                self.send_window -= size
            else:
                self.sock.sendall(head)
                self._send_flow_controlled(call, message)
            while not call.ended:
                self._handle(call, *self._read_frame())
        except _MALFORMED as exc:
            raise GrpcProtocolError(f"malformed frame from the server: {exc}") from exc
        return call.result()

    def settle(self) -> bool:
        """Read what the server sent since the last call ended; whether a call may follow.

        Without blocking unless a frame is half-received. A PING or SETTINGS is answered, a
        late frame of the ended stream dropped, a GOAWAY makes the connection unusable; a
        frame for a stream not opened yet (the answer to a call not made) breaks HTTP/2, and
        would otherwise be read as the next call's answer.
        """
        last = None
        try:
            while True:
                if not self.buf:
                    pending = peek_idle(self.sock)
                    if not pending:
                        return pending is None and self.reusable
                last = last or _Call(self.next_stream - 2)
                self._handle(last, *self._read_frame())
        except (OSError, *_MALFORMED):  # GrpcProtocolError, timeouts: closed, not reused
            return False

    def _send_flow_controlled(self, call: _Call, message: bytes) -> None:
        view, sent = memoryview(message), 0
        call.window = self.stream_window_initial
        while sent < len(view):
            room = min(self.send_window, call.window, self.max_frame, len(view) - sent)
            if room <= 0:
                self._handle(call, *self._read_frame())  # wait for a WINDOW_UPDATE
                if call.ended:  # the server answered early (an error): stop sending, and
                    self.reusable = False  # don't leave a half-sent stream on a reused connection
                    return
                continue
            end = sent + room
            flags = END_STREAM if end == len(view) else 0
            self.sock.sendall(_FRAME.pack(room << 8 | DATA, flags, call.stream) + view[sent:end])
            self.send_window -= room
            call.window -= room
            sent = end

    def _handle(self, call: _Call, kind: int, flags: int, stream: int, payload: bytes) -> None:
        if kind == DATA:
            self._account(len(payload))
            if stream == call.stream:
                call.data(_unpadded(payload) if flags & PADDED else payload)
            elif stream > call.stream:
                raise _not_opened(stream)
        elif kind == HEADERS:
            fields = self._decode(self._header_block(flags, payload))  # every block, in order
            if stream == call.stream:
                call.headers(fields)
            elif stream > call.stream:
                raise _not_opened(stream)
        elif stream == 0:
            self._connection_frame(call, kind, flags, payload)
        elif stream > call.stream and kind in (RST_STREAM, WINDOW_UPDATE):
            raise _not_opened(stream)
        elif kind == WINDOW_UPDATE and stream == call.stream:
            call.window += struct.unpack(">I", payload)[0] & _MAX_WINDOW
        elif kind == RST_STREAM and stream == call.stream:
            code = struct.unpack(">I", payload)[0]
            call.fail(GrpcStatusError(grpc.StatusCode.UNAVAILABLE if code == 7 else
                                      grpc.StatusCode.INTERNAL,
                                      f"stream reset by the server (HTTP/2 error {code})"))
        if flags & END_STREAM and stream == call.stream and kind in (DATA, HEADERS):
            call.ended = True

    def _connection_frame(self, call: _Call, kind: int, flags: int, payload: bytes) -> None:
        if kind == SETTINGS and not flags & ACK:
            for offset in range(0, len(payload), 6):
                key, value = struct.unpack_from(">HI", payload, offset)
                if key == _INITIAL_WINDOW:
                    call.window += value - self.stream_window_initial
                    self.stream_window_initial = value
                elif key == _MAX_FRAME:
                    self.max_frame = value
            self.sock.sendall(_frame(SETTINGS, ACK, 0))
        elif kind == PING and not flags & ACK:
            if len(payload) != 8:
                raise GrpcProtocolError(f"PING frame of {len(payload)} bytes, not 8")
            self.sock.sendall(_frame(PING, ACK, 0, payload))
        elif kind == WINDOW_UPDATE:
            self.send_window += struct.unpack(">I", payload)[0] & _MAX_WINDOW
        elif kind == GOAWAY:
            self.reusable = False
            last_stream, code = struct.unpack_from(">II", payload)
            if call.stream > last_stream & _MAX_WINDOW:
                call.fail(GrpcStatusError(
                    grpc.StatusCode.UNAVAILABLE,
                    f"server closed the connection (GOAWAY, HTTP/2 error {code}): "
                    f"{payload[8:].decode(errors='replace')}"))

    def _account(self, size: int) -> None:
        """Top up the connection window long before the server could run out of it."""
        self.unacked += size
        if self.unacked > _MAX_WINDOW // 2:
            self.sock.sendall(_frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", self.unacked)))
            self.unacked = 0

    def _header_block(self, flags: int, payload: bytes) -> bytes:
        if flags & PADDED:
            payload = _unpadded(payload)
        if flags & PRIORITY:
            payload = payload[5:]
        while not flags & END_HEADERS:
            kind, flags, _, more = self._read_frame()
            if kind != CONTINUATION:
                raise GrpcProtocolError("header block interrupted by another frame")
            payload += more
        return payload

    def _decode(self, block: bytes) -> list[tuple[bytes, bytes]]:
        headers = self.blocks.get(block)
        if headers is None:
            headers = self.decoder.decode(block, raw=True)
            # We announce a table size of 0, but a server may encode a block before it applies
            # that (grpc's early deadline answers do): cache only blocks that left no state.
            # Bounded: error answers can carry ever-new messages.
            if not self.decoder.header_table.dynamic_entries and len(self.blocks) < 64:
                self.blocks[block] = headers
        return headers

    def _frame_head(self) -> tuple[int, int, int, int]:
        """The next frame's ``(length, type, flags, stream)``; its payload is still unread."""
        length_kind, flags, stream = _FRAME.unpack(self._take(9))
        return length_kind >> 8, length_kind & 0xFF, flags, stream & _MAX_WINDOW

    def _read_frame(self) -> tuple[int, int, int, bytes]:
        length, kind, flags, stream = self._frame_head()
        return kind, flags, stream, self._take(length)

    def _take_large(self, size: int) -> memoryview:
        out = receive_exactly(self.sock, self.buf, size)  # ConnectionResetError if cut
        self.buf = b""
        return out

    def _take(self, size: int) -> bytes:
        buf = self.buf
        if len(buf) >= size:
            self.buf = buf[size:]
            return buf[:size]
        if size - len(buf) > _READ:  # a large frame: receive it in place, copied once
            return self._take_large(size)
        chunks = [buf]
        have = len(buf)
        while have < size:
            chunk = self.sock.recv(_READ)
            if not chunk:
                raise GrpcProtocolError("connection closed by the server mid-call")
            chunks.append(chunk)
            have += len(chunk)
        buf = b"".join(chunks)
        self.buf = buf[size:]
        return buf[:size]


def _unpadded(payload: bytes) -> bytes:
    """A PADDED frame's content (RFC 9113 §6.1); padding as long as the frame is an error."""
    if not payload or payload[0] >= len(payload):
        raise GrpcProtocolError("frame padding longer than the frame")
    return payload[1:len(payload) - payload[0]]


def _not_opened(stream: int) -> GrpcProtocolError:
    return GrpcProtocolError(f"the server sent a frame for stream {stream}, which the client "
                             "has not opened")


class _Call:
    """The state of one unary call: status from the trailers, message size from DATA."""

    __slots__ = ("stream", "window", "ended", "received", "prefix", "trailers", "error",
                 "chunks")

    def __init__(self, stream: int, keep: bool = False) -> None:
        self.stream = stream
        self.window = 0
        self.ended = False
        self.received = 0
        self.prefix = b""  # the gRPC message's first 5 bytes: compressed flag, length
        self.trailers: dict[bytes, bytes] = {}
        self.error: Exception | None = None
        self.chunks: list[bytes] | None = [] if keep else None  # the message, when kept

    def data(self, payload: bytes) -> None:
        if self.received < 5:
            self.prefix += payload[:5 - self.received]
        self.received += len(payload)
        if self.chunks is not None:
            self.chunks.append(payload)

    def headers(self, fields: list[tuple[bytes, bytes]]) -> None:
        # Both the response headers and the trailers: a "trailers-only" error answer puts
        # grpc-status in the first (and only) block.
        self.trailers.update(fields)

    def fail(self, error: Exception) -> None:
        self.error = error
        self.ended = True

    def result(self) -> int:
        self._check_status()
        size = self.received - 5  # minus the gRPC message prefix
        if len(self.prefix) < 5 or int.from_bytes(self.prefix[1:], "big") != size:
            raise GrpcStatusError(grpc.StatusCode.INTERNAL,
                                  f"the answer is not one gRPC message: {self.received} bytes, "
                                  f"prefix {bytes(self.prefix).hex() or 'none'}")
        return size

    def _check_status(self) -> None:
        """Raise what ended the call, unless it was an OK grpc-status."""
        if self.error is not None:
            raise self.error
        status = self.trailers.get(b"grpc-status")
        if status is None:
            http_status = self.trailers.get(b":status", b"?").decode()
            raise GrpcStatusError(grpc.StatusCode.UNKNOWN,
                                  f"answer without grpc-status (HTTP status {http_status})")
        if status != b"0":
            code = _STATUS_NAMES.get(int(status)) if status.isdigit() else None
            if code is not grpc.StatusCode.OK:  # "00" is OK too
                message = _percent_decode(self.trailers.get(b"grpc-message", b""))
                raise GrpcStatusError(code or grpc.StatusCode.UNKNOWN, message)


class _StreamCall(_Call):
    """A stream call's state: DATA split into gRPC messages as they complete."""

    __slots__ = ("pending", "answer")

    def __init__(self, stream: int, keep: bool) -> None:
        super().__init__(stream)
        self.pending = b""  # the start of a message not complete yet
        self.answer = StreamAnswer(messages=[] if keep else None)

    def data(self, payload: bytes) -> None:
        now = time.perf_counter_ns()
        self.received += len(payload)
        buf = self.pending + payload if self.pending else payload
        offset, answer = 0, self.answer
        while len(buf) - offset >= 5:
            size = int.from_bytes(buf[offset + 1:offset + 5], "big")
            end = offset + 5 + size
            if end > len(buf):
                break
            answer.arrivals_ns.append(now)
            answer.sizes.append(size)
            # error_message is field 1 (tag 0x0a), written first and only when set.
            if buf[offset] == 0 and size and buf[offset + 5] == 0x0A and answer.error is None:
                answer.error = _stream_error(bytes(buf[offset + 5:end]))
            if answer.messages is not None:
                answer.messages.append(bytes(buf[offset + 5:end]))
            offset = end
        self.pending = bytes(buf[offset:])

    def result(self) -> int:
        self._check_status()
        if self.pending:
            raise GrpcStatusError(grpc.StatusCode.INTERNAL,
                                  f"the stream ended inside a message ({len(self.pending)} "
                                  "bytes of it)")
        return self.received


def _stream_error(message: bytes) -> str:
    """The error_message of a serialized ModelStreamInferResponse."""
    from tritonclient.grpc import service_pb2

    try:
        return service_pb2.ModelStreamInferResponse.FromString(message).error_message
    except Exception as exc:  # noqa: BLE001 - a malformed message is an error all the same
        return f"undecodable stream response: {exc}"


def _percent_decode(value: bytes) -> str:
    from urllib.parse import unquote_to_bytes

    return unquote_to_bytes(value).decode(errors="replace")
