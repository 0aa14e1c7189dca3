"""Glue to tritonclient: its module per protocol, its TLS settings, payload entries as InferInputs.

TLS is set up here once for every client of a target: `tls_context` is the one SSLContext
recipe (the target's CA, else the system's; the client certificate for mTLS; the hostname
always checked), used by the wire transports and by tritonclient.http, and `client_kwargs`
is what `InferenceServerClient` takes for the target's TLS, per protocol. tritonclient.grpc
takes file paths (``root_certificates``, ``private_key``, ``certificate_chain``) and reads
them itself; tritonclient.http (geventhttpclient) calls an ``ssl_context_factory``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from tritonload.core.config import Target
from tritonload.triton.shm import EntryPlacement

_grpc_gevent = False


def enable_grpc_gevent() -> None:
    """Under gevent (Locust), turn on grpc's gevent support before any channel exists.

    Without it a gRPC call blocks the whole gevent hub. Idempotent; a no-op when gevent has
    not monkey-patched this process.
    """
    global _grpc_gevent
    from gevent import monkey

    if not _grpc_gevent and monkey.is_module_patched("socket"):
        from grpc.experimental import gevent as grpc_gevent

        grpc_gevent.init_gevent()
        _grpc_gevent = True


def client_module(protocol: str) -> Any:
    """Tritonclient's module for a protocol."""
    if protocol == "grpc":
        import tritonclient.grpc as module
    else:
        import tritonclient.http as module
    return module


def tls_context(target: Target, alpn: str | None = None) -> Any:
    """A client SSLContext (gevent's) for the target: its CA, its client certificate, ALPN.

    gevent's own ``SSLContext`` class, built directly: ``gevent.ssl.create_default_context``
    is the standard library's function, which, in a process gevent has not monkey-patched
    (tests, benchmarks), returns a standard context whose sockets block the hub. Its
    defaults are the same: certificate and hostname checked (``PROTOCOL_TLS_CLIENT``), the
    given CA file only, else the system's CAs.
    """
    from gevent import ssl

    tls = target.tls
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if tls is not None and tls.ca is not None:
        context.load_verify_locations(cafile=tls.ca)
    else:
        context.load_default_certs()
    if tls is not None and tls.cert is not None:
        context.load_cert_chain(tls.cert, tls.key)
    if alpn is not None:
        context.set_alpn_protocols([alpn])
    return context


def client_kwargs(target: Target, protocol: str) -> dict[str, Any]:
    """``InferenceServerClient``'s TLS keywords for ``protocol`` on this target."""
    if not target.ssl:
        return {}
    tls = target.tls
    if protocol == "grpc":
        if tls is None:
            return {"ssl": True}
        return {"ssl": True, "root_certificates": tls.ca, "private_key": tls.key,
                "certificate_chain": tls.cert}
    # geventhttpclient calls the factory with cafile= (its certifi default) and then turns
    # hostname checking on; ours ignores the argument and returns the target's context.
    return {"ssl": True, "ssl_context_factory": lambda *_, **__: tls_context(target)}


def tls_refusal(target: Target, protocol: str) -> str | None:
    """Why a TLS target hangs up on us, if TLS is why: for a pre-flight call gone "unavailable".

    grpcio reports a mutual-TLS server's refusal of our certificate (or of its absence) as
    UNAVAILABLE "Socket closed": under TLS 1.3 the server judges the client's certificate
    after the handshake, then closes without an alert (checked on this build). So: one
    handshake of our own, one request's first bytes, and an EOF before any answer means the
    server refused this client. A failed handshake gives its own reason. None otherwise.
    """
    from gevent import socket as gsocket
    from gevent import ssl

    host, _, port = target.url(protocol).rpartition(":")
    host = host.strip("[]")
    context = tls_context(target, "h2" if protocol == "grpc" else "http/1.1")
    hello = (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00"
             if protocol == "grpc" else
             f"HEAD /v2/health/live HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    try:
        with gsocket.create_connection((host, int(port)), timeout=target.timeout_s) as raw:
            with context.wrap_socket(raw, server_hostname=host) as sock:
                sock.sendall(hello)
                answer = sock.recv(1)
    except ssl.SSLError as exc:
        return " ".join(str(exc).split())
    except OSError:  # refused, reset, timed out: not TLS's doing, as far as we can tell
        return None
    if answer:
        return None
    return ("the server closed the connection right after the TLS handshake: it refused the "
            "client certificate, or wants one")


def tls_failure(target: Target, where: str, detail: str) -> str:
    """The one line for a refused TLS handshake: what failed, and which files were used."""
    at = detail.lower().find("handshake failed")  # grpcio: "failed to connect ...; last
    if at > 0:  # error: UNKNOWN: ipv4:…: Tls handshake failed (…): …: OK"; keep the reason
        detail = detail[detail.rfind(" ", 0, at - 1) + 1:].removesuffix(": OK")
    tls = target.tls
    files = (f"--tls-ca {tls.ca}" if tls and tls.ca else "the system's CAs") + (
        f", --tls-client-cert {tls.cert}" if tls and tls.cert else ", no client certificate")
    return (f"TLS failed on {where}: {detail} (with {files}; check --tls-ca, and --tls-client-cert/"
            "--tls-client-key if the server wants a client certificate)")


def build_inputs(module: Any, entry: Mapping[str, np.ndarray],
                 placed: EntryPlacement | None = None) -> list[Any]:
    """Tritonclient InferInput objects holding one payload entry as binary tensors.

    With ``placed`` (``--shared-memory``), each input names its region instead.
    """
    from tritonclient.utils import np_to_triton_dtype

    inputs = []
    for name, array in entry.items():
        tensor = module.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        if placed is not None:
            where = placed.inputs[name]
            tensor.set_shared_memory(where.region, where.byte_size, where.offset)
        elif module.__name__.endswith("http"):
            tensor.set_data_from_numpy(array, binary_data=True)
        else:
            tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs
