"""Frozen configuration objects: where the server is, and how a run is shaped.

Bad values fail at construction with a one-line `UsageError`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from tritonload.core.errors import UsageError

PROTOCOLS = ("grpc", "http")
DEFAULT_PORTS = {"http": 8000, "grpc": 8001}
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 field name
_HEADER_VALUE = re.compile(r"[^\x00-\x08\x0a-\x1f\x7f]*")  # no CR, LF or other controls
_SCHEMES = {"http": ("http", False), "https": ("http", True),
            "grpc": ("grpc", False), "grpcs": ("grpc", True)}


def _freeze(mapping: Mapping[str, str] | None) -> Mapping[str, str]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class TlsFiles:
    """A TLS client's own files (PEM): the CA to trust, and its certificate and key for mTLS.

    ``ca`` None trusts the system's CAs. The server's hostname (or IP) is always checked
    against its certificate. The files are read once here, with the standard library, so a
    missing or unreadable one is a one-line error before any connection is tried, rather
    than a handshake failure on every request.
    """

    ca: str | None = None
    cert: str | None = None
    key: str | None = None

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise UsageError("--tls-client-cert and --tls-client-key go together (a client "
                             "certificate for mutual TLS and its private key)")
        for flag, path in (("--tls-ca", self.ca), ("--tls-client-cert", self.cert),
                           ("--tls-client-key", self.key)):
            if path is not None and not os.path.isfile(path):
                raise UsageError(f"{flag} {path}: no such file")
        import ssl  # here, not at import: Locust's gevent patches ssl when it loads

        try:
            context = ssl.create_default_context(cafile=self.ca)
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise UsageError(f"--tls-ca {self.ca}: not a PEM CA certificate ({exc})") from None
        if self.cert is not None:
            try:
                context.load_cert_chain(self.cert, self.key)
            except (ssl.SSLError, OSError, ValueError) as exc:
                raise UsageError(f"--tls-client-cert {self.cert} / --tls-client-key {self.key}: "
                                 f"not a PEM certificate and its matching key ({exc})") from None

    @classmethod
    def of(cls, ca: str | None = None, cert: str | None = None,
           key: str | None = None) -> TlsFiles | None:
        """The files the ``--tls-*`` options name, or None when none is given."""
        if ca is None and cert is None and key is None:
            return None
        return cls(ca, cert, key)


@dataclass(frozen=True)
class Target:
    """A Triton server: its HTTP and/or gRPC endpoints as ``host:port``.

    ``pinned`` is the protocol an explicit URL scheme fixed (``None`` when both may be used).
    ``ssl`` comes from an ``https://`` or ``grpcs://`` scheme; ``tls`` holds the client's
    own TLS files, if any (``--tls-ca``, ``--tls-client-cert``, ``--tls-client-key``).
    ``metrics_port``: the Prometheus endpoint's port when it is known (an embedded server's);
    ``None`` means Triton's layout (`tritonload.triton.metrics.default_metrics_url`).
    """

    host: str
    http_port: int | None = DEFAULT_PORTS["http"]
    grpc_port: int | None = DEFAULT_PORTS["grpc"]
    ssl: bool = False
    pinned: str | None = None
    embedded: bool = False
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float = 30.0
    tls: TlsFiles | None = None
    metrics_port: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", _freeze(self.headers))
        if self.tls is not None and not self.ssl:
            raise UsageError("--tls-ca, --tls-client-cert and --tls-client-key need a TLS target: "
                             "grpcs://host:port or https://host:port")
        for name, value in self.headers.items():  # both transports write them verbatim
            if not _HEADER_NAME.fullmatch(name) or not _HEADER_VALUE.fullmatch(value):
                raise UsageError(f"bad header {name!r}: a name is a token, a value has no "
                                 "control characters")
        if not self.host:
            raise UsageError("target host is empty")
        if self.timeout_s <= 0:
            raise UsageError(f"request timeout must be > 0 s, got {self.timeout_s}")
        for port in (self.http_port, self.grpc_port):
            if port is not None and not 0 < port < 65536:
                raise UsageError(f"port {port} is not in 1..65535")

    @classmethod
    def parse(cls, url: str, **kwargs: object) -> Target:
        """Parse ``host``, ``host:port`` or ``scheme://host:port`` (schemes http(s), grpc(s)).

        A bare host means Triton's defaults: HTTP on 8000 and gRPC on 8001. A bare
        ``host:port`` is taken as HTTP on that port and gRPC on port + 1, Triton's layout.
        """
        text = url.strip().rstrip("/")
        scheme, sep, rest = text.partition("://")
        if not sep:
            scheme, rest = "", text
        if scheme and scheme not in _SCHEMES:
            raise UsageError(f"bad target {url!r}: scheme must be one of {', '.join(_SCHEMES)}")
        host, port = _split_host_port(rest, url)
        if scheme:
            protocol, ssl = _SCHEMES[scheme]
            port = port or DEFAULT_PORTS[protocol]
            ports = {"http_port": None, "grpc_port": None, f"{protocol}_port": port}
            return cls(host=host, ssl=ssl, pinned=protocol, **ports, **kwargs)
        if port:
            return cls(host=host, http_port=port, grpc_port=port + 1, **kwargs)
        return cls(host=host, **kwargs)

    def url(self, protocol: str) -> str:
        """``host:port`` for a protocol, as tritonclient wants it."""
        port = self.http_port if protocol == "http" else self.grpc_port
        if port is None:
            raise UsageError(f"target {self.describe()} is {self.pinned}-only; "
                             f"it cannot serve {protocol} users")
        return f"{self.host}:{port}"

    def supports(self, protocol: str) -> bool:
        """Whether this target has an endpoint for the protocol."""
        return (self.http_port if protocol == "http" else self.grpc_port) is not None

    def as_url(self) -> str:
        """The target as one URL that `parse` reads back (Locust's ``--host``)."""
        if self.pinned:
            scheme = self.pinned + ("s" if self.ssl else "")
            return f"{scheme}://{self.url(self.pinned)}"
        return f"{self.host}:{self.http_port}"  # gRPC is on the next port

    def describe(self) -> str:
        """A short human-readable form."""
        tls = "s" if self.ssl else ""
        parts = [f"{p}{tls}://{self.url(p)}" for p in PROTOCOLS if self.supports(p)]
        return " ".join(parts) + (" (embedded)" if self.embedded else "")


def parse_pairs(items: list[str], flag: str, form: str = "NAME=VALUE") -> dict[str, str]:
    """``KEY=VALUE`` strings (``--header``, ``--payload``, ``--tag``) → dict; one-line errors."""
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value:
            raise UsageError(f"bad {flag} {item!r}: expected {form}")
        pairs[key.strip()] = value
    return pairs


def _split_host_port(rest: str, original: str) -> tuple[str, int | None]:
    if rest.startswith("["):  # [::1]:8000
        host, _, tail = rest[1:].partition("]")
        port_text = tail.lstrip(":")
    elif rest.count(":") == 1:
        host, _, port_text = rest.partition(":")
    else:
        host, port_text = rest, ""
    if "/" in host or not host:
        raise UsageError(f"bad target {original!r}: expected host[:port]")
    if not port_text:
        return host, None
    if not port_text.isdigit():
        raise UsageError(f"bad target {original!r}: port {port_text!r} is not a number")
    return host, int(port_text)
