"""Send one request per model over each protocol and time it: a smoke test of a target."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from tritonload.core.config import PROTOCOLS, Target
from tritonload.core.errors import classify, message_of
from tritonload.triton.admin import TritonAdmin
from tritonload.triton.clients import build_inputs, client_kwargs, client_module
from tritonload.triton.payloads import ModelInfo, Payload, generate_payload


def fetch_payloads(target: Target, models: list[str],
                   shapes: Mapping[str, Mapping[str, tuple[int, ...]]]) -> dict[str, Payload]:
    """Validated, generated payloads for each model, from the served metadata."""
    with TritonAdmin(target) as admin:
        return {
            m: generate_payload(ModelInfo.from_served(admin.metadata(m), admin.config(m)),
                                shapes.get(m), count=1)
            for m in models
        }


def probe(target: Target, payloads: Mapping[str, Payload], repeats: int = 5) -> list[dict]:
    """Per model and protocol: the median latency of ``repeats`` requests after a warm-up."""
    rows = []
    for protocol in PROTOCOLS:
        if not target.supports(protocol):
            continue
        module = client_module(protocol)
        client = module.InferenceServerClient(target.url(protocol),
                                               **client_kwargs(target, protocol))
        try:
            for model, payload in payloads.items():
                inputs = build_inputs(module, payload.entries[0])
                rows.append({"model": model, "protocol": protocol,
                             **_time_requests(client, model, inputs, payload.outputs, repeats)})
        finally:
            client.close()
    return rows


def _time_requests(client: Any, model: str, inputs: list[Any], outputs: tuple[str, ...],
                   repeats: int) -> dict:
    latencies_ms, received = [], 0
    try:
        client.infer(model, inputs)  # warm-up: connection set-up, first execution
        for _ in range(repeats):
            start = time.perf_counter_ns()
            result = client.infer(model, inputs)
            latencies_ms.append((time.perf_counter_ns() - start) / 1e6)
        received = sum(result.as_numpy(name).nbytes for name in outputs)
    except Exception as exc:  # report, don't crash: a probe shows every model's state
        return {"latency_ms": "-", "response_bytes": "-",
                "status": f"{classify(exc)}: {message_of(exc)[:80]}"}
    return {"latency_ms": f"{np.median(latencies_ms):.2f}", "response_bytes": received,
            "status": "ok"}
