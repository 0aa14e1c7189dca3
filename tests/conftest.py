"""Shared fixtures: one embedded, real Triton server for the whole test session."""

from __future__ import annotations

import socket

import pytest

from tritonload.core.config import Target
from tritonload.server import EmbeddedTriton, Ports


def free_ports(count: int = 3, start: int = 18500) -> list[int]:
    """``count`` consecutive free loopback ports at or above ``start``."""
    port = start
    while port < 60000:
        block = list(range(port, port + count))
        if all(_free(p) for p in block):
            return block
        port += count
    raise RuntimeError("no free ports")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture(scope="session")
def triton(tmp_path_factory: pytest.TempPathFactory) -> EmbeddedTriton:
    """The demo fleet on a real tritonserver, started once (its log kept for post-mortems)."""
    log = tmp_path_factory.mktemp("triton") / "tritonserver.log"
    server = EmbeddedTriton(ports=Ports(*free_ports()), log_file=log)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def target(triton: EmbeddedTriton) -> Target:
    """The session server as a Target (both protocols)."""
    return Target(host=triton.host, http_port=triton.ports.http, grpc_port=triton.ports.grpc,
                  embedded=True)
