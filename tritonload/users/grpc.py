"""gRPC: a transport on grpcio with prebuilt, pre-serialized requests, and TritonGrpcUser.

Requests are serialized to bytes once (``prepare``) and sent through a unary-unary call whose
serializer is the identity, so no protobuf work is done per request; the response is kept as
bytes, only measured. Under Locust, grpc's gevent integration must be on before any channel
exists: `enable_grpc_gevent` does it, idempotently, when the first transport is made.
"""

from __future__ import annotations

import gevent
import grpc
from tritonclient.grpc import service_pb2
from tritonclient.utils import np_to_triton_dtype, serialize_byte_tensor

from tritonload.clients import enable_grpc_gevent
from tritonload.config import Target
from tritonload.payloads import Payload
from tritonload.users.base import Prepared, TritonUser

_MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"
_reserved_calls = 0


def reserve_blocking_calls(count: int) -> int:
    """Grow gevent's hub thread pool: every blocking gRPC wait holds one of its threads.

    The default of 10 silently queues calls inside the client beyond 10 in flight.
    """
    global _reserved_calls
    _reserved_calls += count
    pool = gevent.get_hub().threadpool
    pool.maxsize = max(pool.maxsize, _reserved_calls + 10)
    return pool.maxsize


def _identity(data: bytes) -> bytes:
    return data


class GrpcTransport:
    """One channel; ``send`` blocks the calling greenlet only."""

    protocol = "grpc"

    def __init__(self, target: Target, in_flight: int = 1) -> None:
        enable_grpc_gevent()
        reserve_blocking_calls(in_flight)
        url = target.url("grpc")
        options = [("grpc.max_send_message_length", -1),
                   ("grpc.max_receive_message_length", -1)]
        self.channel = (grpc.secure_channel(url, grpc.ssl_channel_credentials(), options)
                        if target.ssl else grpc.insecure_channel(url, options))
        self._call = self.channel.unary_unary(
            _MODEL_INFER, request_serializer=_identity, response_deserializer=_identity)
        self.metadata = tuple((k.lower(), v) for k, v in target.headers.items()) or None
        self.timeout_s = target.timeout_s

    def prepare(self, payload: Payload) -> list[Prepared]:
        """Each payload entry as a serialized ModelInferRequest."""
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
            prepared.append(Prepared(payload.model, data, len(data)))
        return prepared

    def send(self, prepared: Prepared) -> int:
        """One inference; returns the response message size."""
        return len(self._call(prepared.request, timeout=self.timeout_s, metadata=self.metadata))

    def close(self) -> None:
        """Close the channel (an open channel can keep a gevent process from exiting)."""
        self.channel.close()


class TritonGrpcUser(TritonUser):
    """Locust user sending the model mix over gRPC (see `TritonUser` for its settings)."""

    abstract = True
    protocol = "grpc"

    def make_transport(self, target: Target, settings: object) -> GrpcTransport:
        """A channel per user."""
        return GrpcTransport(target, settings.max_in_flight)
