"""Glue to tritonclient: its module per protocol, and payload entries as InferInputs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

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


def build_inputs(module: Any, entry: Mapping[str, np.ndarray]) -> list[Any]:
    """Tritonclient InferInput objects holding one payload entry as binary tensors."""
    from tritonclient.utils import np_to_triton_dtype

    inputs = []
    for name, array in entry.items():
        tensor = module.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        if module.__name__.endswith("http"):
            tensor.set_data_from_numpy(array, binary_data=True)
        else:
            tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs
