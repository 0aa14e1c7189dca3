"""The one place where failures become tritonload's small error taxonomy.

Two kinds of failure live here:

* ``TritonloadError`` and subclasses: problems the user must fix (bad flag, bad payload,
  unreachable server). The CLI prints them as one line and exits with ``exit_code``.
* per-request error kinds: ``classify()`` maps tritonclient / grpc / socket exceptions to a
  short kind string that is recorded with every failed request.
"""

from __future__ import annotations

import sys

#: How every one-line error starts, in every process (the CLI, the Locust child).
ERROR_PREFIX = "tritonload: error: "
#: A line the user should see although the run goes on (a server without an extension);
#: the CLI shows a Locust child's such lines as it shows its errors.
NOTE_PREFIX = "tritonload: note: "


class TritonloadError(Exception):
    """A failure the user can act on; printed as one line, never as a traceback."""

    exit_code = 2


class UsageError(TritonloadError):
    """Bad input: a flag value, a payload file, a model name, a run directory."""


class ServerError(TritonloadError):
    """The embedded server could not start or the target server is unusable."""


class AlreadyReported(TritonloadError):
    """A failure whose one line a child process already printed: exit 2, say nothing more."""

    def __init__(self) -> None:
        super().__init__("")


class OutputMismatch(Exception):
    """An answer whose outputs differ from the payload's ``validation_data`` (``--validate``)."""


class StreamAborted(Exception):
    """A generation the server ended with an error after some tokens had arrived."""


def print_error(message: str) -> None:
    """The single line a user sees for a bad input or an unusable server, on stderr."""
    sys.stderr.write(f"{ERROR_PREFIX}{' '.join(message.split())}\n")
    sys.stderr.flush()


def print_note(message: str) -> None:
    """One line about how the run goes on (what the target does not serve), on stderr."""
    sys.stderr.write(f"{NOTE_PREFIX}{' '.join(message.split())}\n")
    sys.stderr.flush()


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type name when it has none."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# -- per-request error taxonomy ------------------------------------------------------------

ERROR_KINDS = (
    "unavailable",
    "timeout",
    "model_not_found",
    "model_not_ready",
    "shape_mismatch",
    "invalid_input",
    "resource_exhausted",
    "auth",
    "tls",
    "output_mismatch",
    "stream_aborted",
    "server_error",
    "other",
)

# gRPC status names (tritonclient reports "StatusCode.X") and HTTP codes → kind.
_STATUS_KINDS = {
    "UNAVAILABLE": "unavailable",
    "DEADLINE_EXCEEDED": "timeout",
    "CANCELLED": "timeout",
    "NOT_FOUND": "model_not_found",
    "RESOURCE_EXHAUSTED": "resource_exhausted",
    "INTERNAL": "server_error",
    "UNKNOWN": "server_error",
    "UNIMPLEMENTED": "server_error",
    "UNAUTHENTICATED": "auth",
    "PERMISSION_DENIED": "auth",
    "401": "auth",
    "403": "auth",
    "404": "model_not_found",
    "408": "timeout",
    "429": "resource_exhausted",
    "503": "unavailable",
    "504": "timeout",
}

# Message fragments Triton uses; checked before the status, which is coarser. Triton refuses a
# restricted gRPC protocol with UNAVAILABLE, and only its message tells it from an outage.
# grpcio reports a failed TLS handshake the same way ("failed to connect to all addresses;
# ... Ssl handshake failed ... CERTIFICATE_VERIFY_FAILED"), so the TLS fragments come first.
_MESSAGE_KINDS = (
    ("certificate verify failed", "tls"),
    ("certificate_verify_failed", "tls"),
    ("handshake failed", "tls"),
    ("certificate required", "tls"),
    ("certificate_required", "tls"),
    ("is restricted, expecting header", "auth"),
    ("unexpected shape", "shape_mismatch"),
    ("shape", "shape_mismatch"),
    ("is not ready", "model_not_ready"),
    ("not ready", "model_not_ready"),
    ("unknown model", "model_not_found"),
    ("out of memory", "resource_exhausted"),
    ("exceeds", "resource_exhausted"),
    ("deadline exceeded", "timeout"),
    ("timed out", "timeout"),
    ("failed to connect", "unavailable"),
    ("connection refused", "unavailable"),
)


def status_of(exc: BaseException) -> str:
    """Triton's status as tritonclient reports it ("StatusCode.NOT_FOUND", "400"), or ""."""
    status = getattr(exc, "status", None) or getattr(exc, "code", None)  # grpc.RpcError: code()
    value = status() if callable(status) else status
    return str(value) if value is not None else ""


def classify(exc: BaseException) -> str:
    """Map any exception raised by a request (tritonclient, grpc, gevent, socket) to a kind."""
    message = str(exc).lower()
    status = status_of(exc).removeprefix("StatusCode.")
    if isinstance(exc, OutputMismatch):
        return "output_mismatch"
    if isinstance(exc, StreamAborted):
        return "stream_aborted"
    if isinstance(exc, TimeoutError) or type(exc).__name__ == "Timeout":
        return "timeout"
    if _tls_failure(exc):
        return "tls"
    if isinstance(exc, (ConnectionError, OSError)) and not status:
        return "unavailable"
    for fragment, kind in _MESSAGE_KINDS:
        if fragment in message:
            return kind
    if status in _STATUS_KINDS:
        return _STATUS_KINDS[status]
    if status in ("INVALID_ARGUMENT", "400"):
        return "invalid_input"
    if status.isdigit() and int(status) >= 500:
        return "server_error"
    return "other"


# ssl.SSLError subclasses that mean "the connection ended", not "TLS was refused".
_SSL_CLOSED = frozenset({"SSLEOFError", "SSLZeroReturnError", "SSLSyscallError",
                         "SSLWantReadError", "SSLWantWriteError"})


def _tls_failure(exc: BaseException) -> bool:
    """An ssl.SSLError of the handshake (a bad certificate, an alert from the peer).

    By class name, so that this module never imports ssl (Locust's gevent patches it).
    """
    names = {cls.__name__ for cls in type(exc).__mro__}
    return "SSLError" in names and type(exc).__name__ not in _SSL_CLOSED


def message_of(exc: BaseException) -> str:
    """Triton's message without tritonclient's ``[status]`` prefix, on one line."""
    details = getattr(exc, "details", None)  # grpc.RpcError
    text = " ".join(str(details() if callable(details) else exc).split()) or type(exc).__name__
    status = status_of(exc)
    prefix = f"[{status}] "
    return text[len(prefix):] if status and text.startswith(prefix) else text
