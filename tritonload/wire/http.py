"""HTTP: a lean keep-alive transport on geventhttpclient's connections.

tritonclient.http builds each body once (``generate_request_body``, binary tensors), and
geventhttpclient renders the whole request (head + body) once too, in ``prepare``: every
request then is one ``sendall`` of ready bytes on a pooled keep-alive connection, and a small
reader for the answer. geventhttpclient is gevent-native, so async mode is simply a pool of
greenlets each sending synchronously, with as many connections as requests in flight
(tritonclient's own ``async_infer`` sleeps 10 ms per call, which caps a user near 80
submissions per second).

Why not ``HTTPClient.post``: it merges and validates headers, renders the head and runs a
full parser with a Python callback per header field on every request. On ``recommender`` at
concurrency 16 that cost about 205 µs of client CPU per request against about 100 µs here
(benchmarks/vs_perf_analyzer.py); on 2 shared cores, client CPU is server throughput lost.
"""

from __future__ import annotations

import json

from geventhttpclient import HTTPClient
from geventhttpclient.connectionpool import ConnectionPool
from tritonclient.http import InferenceServerClient, InferRequestedOutput
from tritonclient.utils import InferenceServerException

from tritonload.core.config import Target
from tritonload.triton.clients import build_inputs, client_module
from tritonload.triton.payloads import Payload
from tritonload.wire.prepared import Prepared
from tritonload.wire.sockets import peek_idle


class HttpTransport:
    """A keep-alive connection pool sized to the user's requests in flight."""

    protocol = "http"

    def __init__(self, target: Target, in_flight: int = 1) -> None:
        host, _, port = target.url("http").rpartition(":")
        self.client = HTTPClient(
            host.strip("[]"), int(port), ssl=target.ssl, concurrency=in_flight,
            connection_timeout=target.timeout_s, network_timeout=target.timeout_s,
        )
        # The client's pool gives connected (TLS if asked), timed-out, liveness-checked sockets;
        # ``send`` only writes ready bytes on them and reads the answer.
        self.pool: ConnectionPool = self.client._connection_pool
        if not target.ssl:
            # The pool checks each idle connection with a gevent select() before reuse (~10 µs,
            # about 8% of this transport's CPU); a non-blocking peek says the same in one call.
            self.pool._is_socket_alive = _idle_and_open
        self.headers = dict(target.headers)

    def prepare(self, payload: Payload) -> list[Prepared]:
        """Each payload entry as the complete request bytes (head rendered by geventhttpclient)."""
        module = client_module("http")
        outputs = [InferRequestedOutput(name, binary_data=True) for name in payload.outputs]
        uri = f"/v2/models/{payload.model}/infer"
        prepared = []
        for entry in payload.entries:
            body, json_size = InferenceServerClient.generate_request_body(
                build_inputs(module, entry), outputs=outputs)
            headers = {**self.headers, "Content-Type": "application/octet-stream"}
            if json_size is not None:
                headers["Inference-Header-Content-Length"] = str(json_size)
            head = self.client._build_request("POST", uri, body=body, headers=headers)
            prepared.append(Prepared(payload.model, head.encode("latin-1") + body, len(body)))
        return prepared

    def send(self, prepared: Prepared) -> int:
        """One inference; returns the response body size. Raises on a non-200 answer."""
        sock = self.pool.get_socket()
        try:
            sock.sendall(prepared.request)
            status, data, keep_alive = _read_response(sock)
        except BaseException:
            self.pool.release_socket(sock)  # closes it: its state is unknown
            raise
        if keep_alive:
            self.pool.return_socket(sock)
        else:
            self.pool.release_socket(sock)
        if status != 200:
            raise InferenceServerException(msg=_error_message(data), status=str(status))
        return len(data)

    def close(self) -> None:
        """Close every pooled connection."""
        self.client.close()


_BLOCK = 65536


def _idle_and_open(sock: object) -> bool:
    """Whether a pooled keep-alive connection can be reused: open, with nothing to read."""
    return peek_idle(sock) is None  # pending bytes would be an answer nobody asked for


def _read_response(sock: object) -> tuple[int, bytes, bool]:
    """Read one HTTP/1.1 response: ``(status, body, keep_alive)``.

    Handles Content-Length (what Triton sends), chunked and close-delimited bodies. A closed
    connection or a timeout raises (ConnectionError / TimeoutError), as geventhttpclient does.
    """
    buf = sock.recv(_BLOCK)
    while (end := buf.find(b"\r\n\r\n")) < 0:
        buf = _more(sock, buf, "before the response headers")
    lines = buf[:end].split(b"\r\n")
    parts = lines[0].split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise ConnectionError(f"bad HTTP status line {lines[0][:100]!r}")
    status = int(parts[1])
    length, chunked, keep_alive = None, False, parts[0] != b"HTTP/1.0"
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            keep_alive = value.strip().lower() == b"keep-alive" or (
                keep_alive and value.strip().lower() != b"close")
    body = buf[end + 4:]
    if status in (204, 304) or 100 <= status < 200:
        return status, b"", keep_alive
    if chunked:
        return status, _read_chunked(sock, body), keep_alive
    if length is None:  # the body ends when the server closes the connection
        chunks = [body]
        while chunk := sock.recv(_BLOCK):
            chunks.append(chunk)
        return status, b"".join(chunks), False
    if len(body) >= length:
        return status, body[:length], keep_alive
    return status, _read_exactly(sock, body, length), keep_alive


def _read_exactly(sock: object, start: bytes, length: int) -> bytearray:
    """The body of a known length, received in place (a 29 MB answer is not re-copied)."""
    body = bytearray(length)
    body[:len(start)] = start
    view, got = memoryview(body), len(start)
    while got < length:
        received = sock.recv_into(view[got:])
        if not received:
            raise ConnectionResetError("connection closed by the server in the response body")
        got += received
    return body


def _more(sock: object, buf: bytes, where: str) -> bytes:
    chunk = sock.recv(_BLOCK)
    if not chunk:
        raise ConnectionResetError(f"connection closed by the server {where}")
    return buf + chunk


def _read_chunked(sock: object, buf: bytes) -> bytes:
    """Decode a chunked body whose first bytes are ``buf`` (trailers are skipped)."""
    body = []
    while True:
        while (eol := buf.find(b"\r\n")) < 0:
            buf = _more(sock, buf, "in a chunk size")
        size = int(buf[:eol].split(b";", 1)[0], 16)
        buf = buf[eol + 2:]
        if size == 0:
            while not (buf.startswith(b"\r\n") or b"\r\n\r\n" in buf):
                buf = _more(sock, buf, "in the chunked trailer")
            return b"".join(body)
        while len(buf) < size + 2:
            buf = _more(sock, buf, "in a chunk")
        body.append(buf[:size])
        buf = buf[size + 2:]


def _error_message(data: bytes) -> str:
    try:
        return str(json.loads(data)["error"])
    except (ValueError, KeyError, TypeError):
        return data[:200].decode(errors="replace") or "empty error response"

