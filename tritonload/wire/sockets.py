"""Keep-alive connections for the transports: opened, kept idle, checked before reuse.

Both transports give each request in flight its own connection (a sync user holds one, an
async user up to ``max_in_flight``), so the calling greenlet reads its own answer.
`Connections` is that bookkeeping, once for both: a list of idle connections (the last one
given back is reused first), a non-blocking check before reuse, and new TCP (or TLS)
connections when none is idle. A TLS target's context (its CA, the client certificate for
mTLS, ALPN ``h2`` or ``http/1.1``) is `tritonload.triton.clients.tls_context`, the one
tritonclient.http uses too; the server's hostname or IP is checked against its certificate.

Connections are gevent sockets whether or not the process is monkey-patched (Locust patches
it; tests and other callers may not): a plain socket with a timeout polls before every
``recv``, so `peek_idle` would wait out the whole timeout on an idle connection.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

import numpy as np
from gevent import socket as gsocket
from gevent import ssl

from tritonload.core.config import Target
from tritonload.triton.clients import tls_context


class TlsRefused(ssl.SSLError):
    """The server closed a new TLS connection before its first byte: it refused this client.

    Under TLS 1.3 the server judges the client's certificate after the client's side of the
    handshake is done, so a mutual-TLS server (Triton's ``--grpc-use-ssl-mutual``) that gets
    no certificate, or one it does not trust, just closes the connection (checked on this
    build: no alert, the first read returns EOF). Without this, such a refusal reads as a
    connection closed mid-call ("unavailable"); an `ssl.SSLError` is classified ``tls``.
    """

    MESSAGE = ("the server closed the connection right after the TLS handshake: it refused "
               "the client certificate, or wants one (--tls-client-cert, --tls-client-key)")

    def __init__(self) -> None:
        super().__init__(self.MESSAGE)

    def __str__(self) -> str:
        return self.MESSAGE


def fresh_tls(sock: object) -> bool:
    """Whether ``sock`` is a TLS socket (a closed one before any answer is `TlsRefused`)."""
    return isinstance(sock, ssl.SSLSocket)


class _Closable(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=_Closable)


def peek_idle(sock: object) -> bytes | None:
    """Peek at an idle connection without blocking.

    Returns ``None`` if nothing is pending, ``b""`` if the server closed it (or the socket is
    unusable), else the first pending byte. One non-blocking ``recv(MSG_PEEK)`` on the OS
    socket under gevent's wrapper: about 10 µs cheaper than a gevent ``select()``.
    """
    raw = getattr(sock, "_sock", sock)
    try:
        return raw.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return None
    except (OSError, ValueError, AttributeError):
        return b""


class Connections(Generic[C]):
    """One transport's keep-alive connections to ``target``'s ``protocol`` endpoint.

    ``wrap`` turns a new connected socket into the transport's connection (it may speak
    first, as HTTP/2 does); ``reusable`` says whether an idle one may carry the next request
    (`peek_idle` on its socket). Connections in use belong to the greenlets using them.
    """

    def __init__(self, target: Target, protocol: str, *, alpn: str,
                 wrap: Callable[[socket.socket], C], reusable: Callable[[C], bool]) -> None:
        host, _, port = target.url(protocol).rpartition(":")
        self.address = (host.strip("[]"), int(port))
        self.timeout_s = target.timeout_s
        self.tls = tls_context(target, alpn) if target.ssl else None
        self.wrap, self.reusable = wrap, reusable
        self.idle: list[C] = []
        self.closed = False

    def get(self) -> C:
        """An idle connection that passes ``reusable``, else a new one."""
        idle = self.idle
        while idle:
            connection = idle.pop()
            if self.reusable(connection):
                return connection
            connection.close()
        sock = gsocket.create_connection(self.address, timeout=self.timeout_s)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_hostname=self.address[0])
            return self.wrap(sock)
        except BaseException:
            sock.close()
            raise

    def give_back(self, connection: C, keep: bool = True) -> None:
        """Keep a connection whose exchange ended cleanly for the next request, else close it."""
        if keep and not self.closed:
            self.idle.append(connection)
        else:
            connection.close()

    def close(self) -> None:
        """Close the idle connections; those in use close when given back.

        Closing a socket under a greenlet that is still reading it (a user stopping with
        requests in flight) would record a spurious "Bad file descriptor" failure.
        """
        self.closed = True
        while self.idle:
            self.idle.pop().close()


#: A large answer is received with SO_RCVLOWAT at this size (`receive_exactly`).
LOWAT = 1 << 20


def _receive_into(sock: socket.socket, view: memoryview, got: int) -> None:
    """Fill ``view`` from ``got`` on, waking once per `LOWAT` block rather than per segment.

    Shared by both transports' large answers (a 29 MB ranker answer, over gRPC or HTTP). The
    buffer is uninitialised (``numpy.empty``): ``bytearray(n)`` zero-fills it first. On a
    29 MB HTTP answer, one user: 12.0 ms of client CPU per request as it was, 9.9 ms with
    SO_RCVLOWAT at 1 MB, 6.9 ms with the unfilled buffer too; over gRPC 11.7 → 7.4 ms
    (`benchmarks/large_answers.py`).
    """
    size = len(view)
    lowat = size - got > LOWAT
    try:
        while got < size:
            if lowat:  # the last block: exactly what is left
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, min(LOWAT, size - got))
            received = sock.recv_into(view[got:])
            if not received:
                raise ConnectionResetError("connection closed by the server mid-answer")
            got += received
    finally:
        if lowat:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)


def receive_exactly(sock: socket.socket, start: bytes, size: int) -> memoryview:
    """``size`` bytes, the first of them ``start`` (already read), received in place."""
    view = memoryview(np.empty(size, np.uint8))
    view[:len(start)] = start
    _receive_into(sock, view, len(start))
    return view
