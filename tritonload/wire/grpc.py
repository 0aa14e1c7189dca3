"""gRPC: a pooled transport on tritonload's lean gRPC wire client.

Requests are serialized once (``prepare``) into ready gRPC messages, and the request header
block is encoded once per transport, so a call only writes bytes and reads the answer
(`tritonload.wire.grpc_wire` explains why not grpcio). As over HTTP/1.1, each request in
flight has its own connection (`tritonload.wire.sockets.Connections`, shared with the HTTP
transport): a sync user holds one, an async user up to ``max_in_flight``.
"""

from __future__ import annotations

from typing import Any

from tritonclient.grpc import InferResult, service_pb2
from tritonclient.utils import np_to_triton_dtype

from tritonload.core.config import Target
from tritonload.triton.expected import check_outputs
from tritonload.triton.payloads import Payload
from tritonload.triton.shm import Placement, tensor_bytes
from tritonload.wire.grpc_wire import GrpcConnection, GrpcStatusError, encode_headers, grpc_message
from tritonload.wire.prepared import Prepared, StreamAnswer
from tritonload.wire.sockets import Connections

MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"
MODEL_STREAM_INFER = "/inference.GRPCInferenceService/ModelStreamInfer"


class GrpcTransport:
    """Keep-alive HTTP/2 connections, one per request in flight; ``send`` blocks its greenlet."""

    protocol = "grpc"

    def __init__(self, target: Target) -> None:
        self.connections = Connections(target, "grpc", alpn="h2", wrap=GrpcConnection,
                                       reusable=GrpcConnection.settle)
        scheme = "https" if target.ssl else "http"
        self.header_block = encode_headers(MODEL_INFER, target.url("grpc"), target.headers,
                                           target.timeout_s, scheme)
        # A decoupled model's stream: the timeout covers the whole generation.
        self.stream_block = encode_headers(MODEL_STREAM_INFER, target.url("grpc"),
                                           target.headers, target.timeout_s, scheme)

    def prepare(self, payload: Payload) -> list[Prepared]:
        """Each payload entry as a ready gRPC message holding a ModelInferRequest.

        Under ``--shared-memory`` a tensor names its region instead of carrying its bytes.
        """
        prepared = []
        for index, entry in enumerate(payload.entries):
            placed = payload.shared[index] if payload.shared else None
            request = service_pb2.ModelInferRequest(model_name=payload.model)
            for name, array in entry.items():
                tensor = request.inputs.add()
                tensor.name, tensor.datatype = name, np_to_triton_dtype(array.dtype)
                tensor.shape.extend(array.shape)
                if placed is not None:
                    _name_region(tensor.parameters, placed.inputs[name])
                else:
                    request.raw_input_contents.append(bytes(tensor_bytes(array)))
            for name in payload.outputs:
                output = request.outputs.add()
                output.name = name
                if placed is not None and name in placed.outputs:
                    _name_region(output.parameters, placed.outputs[name])
            data = request.SerializeToString()
            expected = payload.validation[index] if payload.validation else None
            prepared.append(Prepared(payload.model, grpc_message(data), len(data), expected))
        return prepared

    def send(self, prepared: Prepared) -> int:
        """One inference; returns the response message size. Raises on a non-OK status."""
        connections = self.connections
        connection = connections.get()
        try:
            if prepared.expected is None:
                size = connection.call(self.header_block, prepared.request)
            else:
                message = connection.call_for_message(self.header_block, prepared.request)
                size = len(message)
        except GrpcStatusError:
            # The call ended cleanly: the connection is fine (unless the stream was left
            # half-sent, which ``reusable`` says).
            connections.give_back(connection, connection.reusable)
            raise
        except BaseException:
            connection.close()  # timed out or broken: its state is unknown
            raise
        connections.give_back(connection, connection.reusable)
        if prepared.expected is not None:  # --validate: raises OutputMismatch
            result = InferResult(service_pb2.ModelInferResponse.FromString(message))
            check_outputs(prepared.model, prepared.expected, result.as_numpy)
        return size

    def stream(self, prepared: Prepared) -> StreamAnswer:
        """One generation on a ModelStreamInfer stream: every response's arrival and size.

        Raises on a non-OK status; an error a response carries is `StreamAnswer.error`.
        """
        connections = self.connections
        connection = connections.get()
        try:
            answer = connection.stream_call(self.stream_block, prepared.request)
        except GrpcStatusError:
            connections.give_back(connection, connection.reusable)
            raise
        except BaseException:
            connection.close()
            raise
        connections.give_back(connection, connection.reusable)
        return answer

    def close(self) -> None:
        """Close the idle connections; those in use close when their call ends (`Connections`)."""
        self.connections.close()


def _name_region(parameters: Any, placement: Placement) -> None:
    """A tensor's parameters pointing at its bytes in a registered shared-memory region."""
    parameters["shared_memory_region"].string_param = placement.region
    parameters["shared_memory_byte_size"].int64_param = placement.byte_size
    if placement.offset:
        parameters["shared_memory_offset"].int64_param = placement.offset
