"""gRPC: a pooled transport on tritonload's lean gRPC wire client.

Requests are serialized once (``prepare``) into ready gRPC messages, and the request header
block is encoded once per transport, so a call only writes bytes and reads the answer
(`tritonload.wire.grpc_wire` explains why not grpcio). As over HTTP/1.1, each request in
flight has its own connection: a sync user holds one, an async user up to ``max_in_flight``.
"""

from __future__ import annotations

import socket
import ssl

from tritonclient.grpc import service_pb2
from tritonclient.utils import np_to_triton_dtype, serialize_byte_tensor

from tritonload.core.config import Target
from tritonload.triton.payloads import Payload
from tritonload.wire.grpc_wire import GrpcConnection, GrpcStatusError, encode_headers, grpc_message
from tritonload.wire.prepared import Prepared
from tritonload.wire.sockets import peek_idle

MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"


class GrpcTransport:
    """Keep-alive HTTP/2 connections, one per request in flight; ``send`` blocks its greenlet."""

    protocol = "grpc"

    def __init__(self, target: Target) -> None:
        authority = target.url("grpc")
        host, _, port = authority.rpartition(":")
        self.address = (host.strip("[]"), int(port))
        self.timeout_s = target.timeout_s
        self.tls = _tls_context() if target.ssl else None
        self.header_block = encode_headers(MODEL_INFER, authority, target.headers,
                                           target.timeout_s, "https" if target.ssl else "http")
        self.idle: list[GrpcConnection] = []
        self.closed = False

    def prepare(self, payload: Payload) -> list[Prepared]:
        """Each payload entry as a ready gRPC message holding a ModelInferRequest."""
        prepared = []
        for entry in payload.entries:
            request = service_pb2.ModelInferRequest(model_name=payload.model)
            for name, array in entry.items():
                tensor = request.inputs.add()
                tensor.name, tensor.datatype = name, np_to_triton_dtype(array.dtype)
                tensor.shape.extend(array.shape)
                request.raw_input_contents.append(
                    serialize_byte_tensor(array).tobytes() if array.dtype == object
                    else array.tobytes())
            for name in payload.outputs:
                request.outputs.add().name = name
            data = request.SerializeToString()
            prepared.append(Prepared(payload.model, grpc_message(data), len(data)))
        return prepared

    def send(self, prepared: Prepared) -> int:
        """One inference; returns the response message size. Raises on a non-OK status."""
        connection = self._connection()
        try:
            size = connection.call(self.header_block, prepared.request)
        except GrpcStatusError:
            self._give_back(connection)  # the call ended cleanly: the connection is fine
            raise
        except BaseException:
            connection.close()  # timed out or broken: its state is unknown
            raise
        self._give_back(connection)
        return size

    def close(self) -> None:
        """Close the idle connections; those in use close when their call ends.

        Closing a socket under a greenlet that is still reading it (a user stopping with
        requests in flight) would record a spurious "Bad file descriptor" failure.
        """
        self.closed = True
        while self.idle:
            self.idle.pop().close()

    def _connection(self) -> GrpcConnection:
        while self.idle:
            connection = self.idle.pop()
            if peek_idle(connection.sock) != b"":  # pending PING/SETTINGS: the call reads them
                return connection
            connection.close()
        sock = socket.create_connection(self.address, timeout=self.timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_hostname=self.address[0])
            return GrpcConnection(sock)
        except BaseException:
            sock.close()
            raise

    def _give_back(self, connection: GrpcConnection) -> None:
        if connection.reusable and not self.closed:
            self.idle.append(connection)
        else:
            connection.close()


def _tls_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.set_alpn_protocols(["h2"])
    return context

