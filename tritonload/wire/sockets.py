"""What an idle keep-alive connection holds, for the transports' reuse checks."""

from __future__ import annotations

import socket


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
