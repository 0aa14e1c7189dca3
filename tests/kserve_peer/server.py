"""KServe v2 test peer: kserve 0.21's own ModelServer, run from the peer venv (see peer.py).

Two models, both through ``kserve.Model`` (``get_input_types``/``get_output_types`` feed
``GET /v2/models/{name}`` and gRPC ``ModelMetadata``):

- ``recommender``: ``user_features``, ``item_features`` FP32 [-1, 64] -> ``score`` FP32
  [-1, 1], the row-wise dot product (leading -1: a batch dimension);
- ``fixed_scorer``: ``x`` FP32 [4] -> ``y`` FP32 [4] = 2x (no batch dimension).

kserve binds REST to 0.0.0.0 and gRPC to [::] with no option to change it; both are pinned to
127.0.0.1 here. Outputs follow kserve's own ``get_predict_response``: binary over REST when the
request asks for it, raw over gRPC when the inputs came raw.
"""

from __future__ import annotations

import argparse
import asyncio
import logging

import grpc
import kserve.model_server as model_server
import kserve.protocol.grpc.server as grpc_server
import numpy as np
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer
from kserve.errors import InvalidInput

HOST = "127.0.0.1"


class _LoopbackRest(model_server.RESTServer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.config.host = HOST  # read by uvicorn when it binds, after this


def _loopback_grpc_server(*args, **kwargs):
    server = grpc.aio.server(*args, **kwargs)
    add_port = server.add_insecure_port
    server.add_insecure_port = lambda address: add_port(f"{HOST}:{address.rsplit(':', 1)[1]}")
    return server


model_server.RESTServer = _LoopbackRest
grpc_server.aio = argparse.Namespace(server=_loopback_grpc_server)  # the module's only use


def _fp32(name: str, *shape: int) -> dict:
    return {"name": name, "datatype": "FP32", "shape": list(shape)}


def _fits(array: np.ndarray | None, shape: list[int]) -> bool:
    if array is None or array.dtype != np.float32 or array.ndim != len(shape):
        return False
    return all(want in (-1, have) for want, have in zip(shape, array.shape, strict=True))


class V2Model(Model):
    """A v2 model: FP32 tensors in, ``compute(inputs) -> outputs`` (dicts of arrays)."""

    def __init__(self, name: str, inputs: list[dict], outputs: list[dict], compute,
                 delay_s: float = 0.0):
        super().__init__(name)
        self.inputs, self.outputs, self.compute, self.delay_s = inputs, outputs, compute, delay_s

    def load(self) -> bool:
        self.ready = True
        return self.ready

    def get_input_types(self) -> list[dict]:
        return self.inputs

    def get_output_types(self) -> list[dict]:
        return self.outputs

    async def predict(self, payload: InferRequest, headers=None, response_headers=None):
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        arrays = {t.name: t.as_numpy() for t in payload.inputs}
        for spec in self.inputs:  # kserve checks no shapes itself; Triton would, so do we
            got = arrays.get(spec["name"])
            if not _fits(got, spec["shape"]):
                shape = None if got is None else list(got.shape)
                raise InvalidInput(f"input {spec['name']!r}: expected FP32 {spec['shape']},"
                                   f" got {shape}")
        outputs = []
        for name, array in self.compute(arrays).items():
            out = InferOutput(name=name, shape=list(array.shape), datatype="FP32")
            out.set_data_from_numpy(array, binary_data=payload.use_binary_outputs)
            outputs.append(out)
        return InferResponse(response_id=payload.id or "", model_name=self.name,
                             infer_outputs=outputs, use_binary_outputs=payload.use_binary_outputs,
                             requested_outputs=payload.request_outputs)


def models(delay_s: float = 0.0) -> list[V2Model]:
    """The peer's models."""
    dot = V2Model("recommender", [_fp32("user_features", -1, 64), _fp32("item_features", -1, 64)],
               [_fp32("score", -1, 1)],
               lambda t: {"score": np.einsum("ij,ij->i", t["user_features"],
                                             t["item_features"])[:, None]}, delay_s)
    double = V2Model("fixed_scorer", [_fp32("x", 4)], [_fp32("y", 4)],
                  lambda t: {"y": t["x"] * np.float32(2)}, delay_s)
    for model in (dot, double):
        model.load()
    return [dot, double]


def main() -> None:
    parser = argparse.ArgumentParser(parents=[model_server.parser], conflict_handler="resolve")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="sleep per request")
    args = parser.parse_args()
    server = ModelServer(http_port=args.http_port, grpc_port=args.grpc_port, enable_grpc=True,
                         workers=1)
    for name in ("kserve.trace", "uvicorn.access"):  # a line per request would slow a load test
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("kserve").addFilter(lambda r: r.module != "interceptors")  # gRPC's line
    server.start(models(args.delay_ms / 1000))


if __name__ == "__main__":
    main()
