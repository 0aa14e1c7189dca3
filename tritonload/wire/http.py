"""HTTP: a lean keep-alive HTTP/1.1 transport on plain (gevent) sockets.

Each request is rendered whole, once, in ``prepare``: tritonclient.http builds the body
(``generate_request_body``, binary tensors) and this module writes the head (request line,
Host, Content-Type, Content-Length, Inference-Header-Content-Length, the target's headers).
A request then is one ``sendall`` of ready bytes on a keep-alive connection and a small reader
for the answer. Connections are `tritonload.wire.sockets.Connections`, as for gRPC: one per
request in flight (a sync user holds one, an async user up to ``max_in_flight``), so async
mode is simply a pool of greenlets each sending synchronously (tritonclient's own
``async_infer`` sleeps 10 ms per call, which caps a user near 80 submissions per second).

Why not ``HTTPClient.post`` (geventhttpclient): it merges and validates headers, renders the
head and runs a full parser with a Python callback per header field on every request. On
``recommender`` at concurrency 16 that cost about 205 µs of client CPU per request against
about 100 µs for ready requests (benchmarks/vs_perf_analyzer.py, when first measured); on 2
shared cores, client CPU is server throughput lost.

Why not geventhttpclient's connection pool under these ready requests, as before: it could
only be reached through private attributes (``_connection_pool``, ``_build_request``,
``_is_socket_alive``), which pinned geventhttpclient to one minor release, and its checkout
(a gevent queue behind a semaphore) costs more than a list of idle sockets and one
non-blocking peek. In ``benchmarks/vs_perf_analyzer.py --modes http-sync`` (3 alternated
runs each) client CPU fell from 43-52 µs per request on that pool to 35-39 µs here, against
40-50 µs for perf_analyzer measured alongside.

The reader is small but strict where a mistake would cost a wrong size or an unclassified
error (tests/engine/test_wire_fuzz.py feeds it valid, truncated and random responses): it
skips interim 1xx answers, and a bad status line, Content-Length or chunk size is a
ConnectionError. A large body is received in place, waking once per megabyte
(`tritonload.wire.sockets.receive_exactly`: a 29 MB answer cost 12.2 ms of client CPU, now
7.3 ms), and so is a large chunk of a chunked body (kserve's binary answers: `read_chunked`).
Before, a 100 Continue was taken for the answer, ``int()`` raised ValueError on a bad length
(and took ``-1``), and a Content-Length of 10**12 was allocated up front (MemoryError).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Mapping
from urllib.parse import quote

from tritonclient.http import InferenceServerClient, InferRequestedOutput, InferResult
from tritonclient.utils import InferenceServerException

from tritonload.core.config import Target
from tritonload.triton.clients import build_inputs, client_module
from tritonload.triton.expected import check_outputs
from tritonload.triton.payloads import Payload
from tritonload.triton.shm import EntryPlacement
from tritonload.wire.prepared import Prepared
from tritonload.wire.sockets import Connections, peek_idle, receive_exactly

# What describes the body is ours; a target header of the same name would contradict it.
_FRAMING = frozenset({"content-type", "content-length", "transfer-encoding",
                      "inference-header-content-length"})


class HttpTransport:
    """Keep-alive HTTP/1.1 connections, one per request in flight; ``send`` blocks its greenlet."""

    protocol = "http"

    def __init__(self, target: Target) -> None:
        self.connections: Connections[socket.socket] = Connections(
            target, "http", alpn="http/1.1", wrap=_as_is, reusable=_idle_and_open)
        host, port = self.connections.address
        self.host = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.headers = dict(target.headers)  # checked by Target: no CR/LF, valid names

    def prepare(self, payload: Payload) -> list[Prepared]:
        """Each payload entry as the complete request bytes: head and body."""
        module = client_module("http")
        uri = f"/v2/models/{quote(payload.model)}/infer"
        prepared = []
        for index, entry in enumerate(payload.entries):
            placed = payload.shared[index] if payload.shared else None
            body, json_size = InferenceServerClient.generate_request_body(
                build_inputs(module, entry, placed), outputs=_outputs(payload.outputs, placed))
            head = request_head(uri, self.host, self.headers, len(body), json_size)
            expected = payload.validation[index] if payload.validation else None
            prepared.append(Prepared(payload.model, head + body, len(body), expected))
        return prepared

    def send(self, prepared: Prepared) -> int:
        """One inference; returns the response body size. Raises on a non-200 answer."""
        connections = self.connections
        sock = connections.get()
        try:
            sock.sendall(prepared.request)
            status, data, keep_alive, json_size = _read_response(sock)
        except BaseException:
            sock.close()  # timed out or broken: its state is unknown
            raise
        connections.give_back(sock, keep_alive)
        if status != 200:
            raise InferenceServerException(msg=error_message(data), status=str(status))
        if prepared.expected is not None:  # --validate: raises OutputMismatch
            result = InferResult.from_response_body(bytes(data), header_length=json_size)
            check_outputs(prepared.model, prepared.expected, result.as_numpy)
        return len(data)

    def close(self) -> None:
        """Close the idle connections; those in use close when their request ends."""
        self.connections.close()


def _outputs(names: tuple[str, ...], placed: EntryPlacement | None
             ) -> list[InferRequestedOutput]:
    """The requested outputs: binary tensors in the answer, or written to shared memory."""
    outputs = []
    for name in names:
        output = InferRequestedOutput(name, binary_data=True)
        if placed is not None and name in placed.outputs:
            where = placed.outputs[name]
            output.set_shared_memory(where.region, where.byte_size, where.offset)
        outputs.append(output)
    return outputs


def request_head(uri: str, host: str, headers: Mapping[str, str], body_size: int,
                 json_size: int | None, content_type: str | None = None) -> bytes:
    """An inference request's HTTP/1.1 head (``POST``), ending with the blank line.

    A ``Host`` among ``headers`` replaces ours; the body's own fields (Content-Type,
    Content-Length, Inference-Header-Content-Length) are always ours. The Content-Type is
    ``application/octet-stream`` for a body with binary tensors (``json_size`` given), else
    ``application/json``. Triton takes either (its ``--shared-memory`` runs, all JSON, are
    clean with both), but kserve 0.21's REST server reads an all-JSON body only as
    ``application/json``; as ``application/octet-stream`` it answered 400 "received byte
    inputs, but the 'inference-header-content-length' header is missing".
    """
    if content_type is None:
        content_type = "application/json" if json_size is None else "application/octet-stream"
    fields = {"Host": host}
    for name, value in headers.items():
        if name.lower() == "host":
            fields["Host"] = value
        elif name.lower() not in _FRAMING:
            fields[name] = value
    fields["Content-Type"] = content_type
    fields["Content-Length"] = str(body_size)
    if json_size is not None:
        fields["Inference-Header-Content-Length"] = str(json_size)
    lines = [f"POST {uri} HTTP/1.1", *(f"{name}: {value}" for name, value in fields.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _as_is(sock: socket.socket) -> socket.socket:
    return sock


def _idle_and_open(sock: socket.socket) -> bool:
    """Whether an idle keep-alive connection can be reused: open, with nothing to read."""
    return peek_idle(sock) is None  # pending bytes would be an answer nobody asked for


_BLOCK = 65536
# A Content-Length up to this is received in place into a buffer of that size; beyond it, in
# blocks joined at the end, so a broken or hostile length costs what the server sends, not
# what it claims (allocating 10**12 bytes up front raised MemoryError, an unclassified error).
_PREALLOCATE = 256 * 2**20
_DIGITS, _HEX_DIGITS = b"0123456789", b"0123456789abcdefABCDEF"


def _read_response(sock: object) -> tuple[int, bytes, bool, int | None]:
    """Read one HTTP/1.1 response: ``(status, body, keep_alive, json_size)``.

    ``json_size`` is Triton's Inference-Header-Content-Length: the JSON part of a body whose
    outputs follow in binary (None when the whole body is JSON).

    Handles Content-Length (what Triton sends), chunked (what kserve sends with binary
    outputs) and close-delimited bodies, and skips interim 1xx answers (RFC 9110 §15.2: a
    client must accept them even unasked; the final answer follows). A closed connection or
    a timeout raises (ConnectionError / TimeoutError), and so does a response that breaks
    HTTP/1.1's framing (ConnectionError: a bad status line, Content-Length or chunk size;
    ``int()`` raised ValueError on some and took a sign, ``_`` or ``0x`` on others).
    """
    return read_body(sock, *read_head(sock))


def read_body(sock: object, status: int, length: int | None, chunked: bool, keep_alive: bool,
              json_size: int | None, body: bytes) -> tuple[int, bytes, bool, int | None]:
    """The body after `read_head` (its values, in order): as `_read_response` returns."""
    if status in (204, 304):
        return status, b"", keep_alive, None
    if chunked:
        return status, read_chunked(sock, body), keep_alive, json_size
    if length is None:  # the body ends when the server closes the connection
        chunks = [body]
        while chunk := sock.recv(_BLOCK):
            chunks.append(chunk)
        return status, b"".join(chunks), False, json_size
    if len(body) >= length:
        return status, body[:length], keep_alive, json_size
    return status, _read_exactly(sock, body, length), keep_alive, json_size


def read_head(sock: object) -> tuple[int, int | None, bool, bool, int | None, bytes]:
    """A response's head: ``(status, length, chunked, keep_alive, json_size, body start)``.

    ``length`` is the Content-Length (None without one); ``body start`` the bytes read past
    the head. Interim 1xx answers are skipped; a bad status line or length raises
    ConnectionError.
    """
    buf = sock.recv(_BLOCK)
    while True:
        while (end := buf.find(b"\r\n\r\n")) < 0:
            buf = _more(sock, buf, "before the response headers")
        lines = buf[:end].split(b"\r\n")
        parts = lines[0].split(None, 2)
        if (len(parts) < 2 or not parts[0].startswith(b"HTTP/") or len(parts[1]) != 3
                or not parts[1].isdigit() or parts[1] < b"100"):
            raise ConnectionError(f"bad HTTP status line {lines[0][:100]!r}")
        status = int(parts[1])
        if status >= 200:
            break
        buf = buf[end + 4:]  # an interim answer (100 Continue, 103 Early Hints)
    length, chunked, keep_alive, json_size = None, False, parts[0] != b"HTTP/1.0", None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = _number(value, _DIGITS, "Content-Length")
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"inference-header-content-length":
            json_size = _number(value, _DIGITS, "Inference-Header-Content-Length")
        elif name == b"connection":
            keep_alive = value.strip().lower() == b"keep-alive" or (
                keep_alive and value.strip().lower() != b"close")
    return status, length, chunked, keep_alive, json_size, buf[end + 4:]


def _number(text: bytes, digits: bytes, what: str) -> int:
    """A Content-Length or chunk size: digits only, between optional whitespace."""
    text = text.strip()
    if not text or text.strip(digits):
        raise ConnectionError(f"bad {what} {text[:40]!r}")
    return int(text, 16 if digits is _HEX_DIGITS else 10)


def _read_exactly(sock: object, start: bytes, length: int) -> bytes | memoryview:
    """The body of a known length, received in place (a 29 MB answer is not re-copied)."""
    if length > _PREALLOCATE:
        chunks, got = [start], len(start)
        while got < length:
            chunk = sock.recv(min(_PREALLOCATE // 256, length - got))
            if not chunk:
                raise ConnectionResetError("connection closed by the server in the response body")
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)
    return receive_exactly(sock, start, length)


def _more(sock: object, buf: bytes, where: str) -> bytes:
    chunk = sock.recv(_BLOCK)
    if not chunk:
        raise ConnectionResetError(f"connection closed by the server {where}")
    return buf + chunk


def read_chunked(sock: object, buf: bytes, on_chunk=None) -> bytes | memoryview:
    """Decode a chunked body whose first bytes are ``buf`` (trailers are skipped).

    A chunk much larger than what is already read is received in place (`_read_exactly`),
    as a Content-Length body is: kserve's REST server sends a binary answer as one chunk,
    and growing a buffer by ``buf + recv`` copied it once per 64 KB received. On a socket
    pair, a 29 MB chunk cost 337-370 ms of client CPU that way, now 4.0-4.3 ms, as much as
    the same body with a Content-Length (3.8-4.4 ms). A body of one chunk is returned as
    it was received, not copied again.

    With ``on_chunk``, each chunk's data is handed to it as soon as it is whole (a stream of
    server-sent events), and nothing is kept.
    """
    body = []
    while True:
        while (eol := buf.find(b"\r\n")) < 0:
            buf = _more(sock, buf, "in a chunk size")
        size = _number(buf[:eol].split(b";", 1)[0], _HEX_DIGITS, "chunk size")
        buf = buf[eol + 2:]
        if size == 0:
            while not (buf.startswith(b"\r\n") or b"\r\n\r\n" in buf):
                buf = _more(sock, buf, "in the chunked trailer")
            return body[0] if len(body) == 1 else b"".join(body)
        if size + 2 - len(buf) > _BLOCK:  # a large chunk: in place, exactly it and its CRLF
            data, buf = _read_exactly(sock, buf, size + 2)[:size], b""
        else:
            while len(buf) < size + 2:
                buf = _more(sock, buf, "in a chunk")
            data, buf = buf[:size], buf[size + 2:]
        if on_chunk is None:
            body.append(data)
        else:
            on_chunk(bytes(data))  # a no-op for bytes; an event reader wants them


def error_message(data: bytes | memoryview) -> str:
    """Triton's error message in an answer body (its JSON ``error``), else the body's start."""
    data = bytes(data)
    try:
        return str(json.loads(data)["error"])
    except (ValueError, KeyError, TypeError):
        return data[:200].decode(errors="replace") or "empty error response"

