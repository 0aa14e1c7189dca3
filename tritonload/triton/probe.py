"""Send one request per model over each protocol and time it: a smoke test of a target.

A decoupled model (an LLM's stream of tokens) cannot take a unary request: it is probed with
one short generation (``max_tokens`` = `PROBE_TOKENS`) over gRPC's ModelStreamInfer
(tritonclient's stream) and HTTP's generate_stream (server-sent events), timed to its last
token.
"""

from __future__ import annotations

import json
import queue
import ssl
import time
import urllib.request
from collections.abc import Mapping
from typing import Any

import numpy as np

from tritonload.core.config import PROTOCOLS, Target
from tritonload.core.errors import UsageError, classify, message_of
from tritonload.triton.admin import TritonAdmin
from tritonload.triton.clients import build_inputs, client_kwargs, client_module
from tritonload.triton.payloads import ModelInfo, Payload, generate_payload
from tritonload.triton.prompts import (
    Lengths,
    PromptSpec,
    check_generative,
    generate_json,
    prompt_payload,
)
from tritonload.triton.served import served_model

PROBE_TOKENS = 4
#: Words in a generative model's probe prompt.
PROBE_WORDS = 8


def fetch_payloads(target: Target, models: list[str],
                   shapes: Mapping[str, Mapping[str, tuple[int, ...]]]
                   ) -> dict[str, tuple[ModelInfo, Payload]]:
    """Each model's served description and a validated, generated payload for it."""
    with TritonAdmin(target) as admin:
        infos = {m: served_model(admin, m)[0] for m in models}
    return {m: (info, _probe_payload(info, shapes.get(m))) for m, info in infos.items()}


def _probe_payload(info: ModelInfo, shapes: Mapping[str, tuple[int, ...]] | None) -> Payload:
    """One request: generated, or a short prompt for a generative model.

    The prompt is the LLM users' own kind (`tritonload.triton.prompts`: text, for a model that
    takes text or token ids), asking for `PROBE_TOKENS` tokens.
    """
    if info.decoupled:
        try:
            check_generative(info)
        except UsageError:  # a streaming model of another kind: its inputs, generated
            pass
        else:
            spec = PromptSpec(isl=Lengths(PROBE_WORDS), osl=Lengths(PROBE_TOKENS))
            return prompt_payload(info, spec, count=1)
    return generate_payload(info, shapes, count=1)


def probe(target: Target, payloads: Mapping[str, tuple[ModelInfo, Payload]],
          repeats: int = 5) -> list[dict]:
    """Per model and protocol: the median latency of ``repeats`` requests after a warm-up."""
    rows = []
    for protocol in PROTOCOLS:
        if not target.supports(protocol):
            continue
        module = client_module(protocol)
        client = module.InferenceServerClient(target.url(protocol),
                                               **client_kwargs(target, protocol))
        try:
            for model, (info, payload) in payloads.items():
                entry = payload.entries[0]
                if not info.decoupled:
                    send = _unary(client, module, model, entry, payload.outputs)
                elif protocol == "grpc":
                    send = _streamer(client, module, model, entry)
                else:
                    send = _sse_poster(target, model, entry)
                rows.append({"model": model, "protocol": protocol,
                             **_time_requests(send, repeats)})
        finally:
            client.close()
    return rows


def _unary(client: Any, module: Any, model: str, entry: Mapping[str, np.ndarray],
           outputs: tuple[str, ...]):
    """One inference request; returns the bytes of its outputs."""
    inputs = build_inputs(module, entry)

    def send() -> int:
        result = client.infer(model, inputs)
        return sum(result.as_numpy(name).nbytes for name in outputs)
    return send


def _streamer(client: Any, module: Any, model: str, entry: Mapping[str, np.ndarray]):
    """One generation over a gRPC stream, to its last response; returns the bytes received."""
    def send() -> int:
        answers: queue.Queue = queue.Queue()
        client.start_stream(callback=lambda result, error: answers.put(error or result))
        try:
            client.async_stream_infer(model, build_inputs(module, entry),
                                      enable_empty_final_response=True)
            received = 0
            while True:
                answer = answers.get(timeout=30)
                if isinstance(answer, Exception):
                    raise answer
                response = answer.get_response()
                received += sum(len(c) for c in response.raw_output_contents)
                final = response.parameters.get("triton_final_response")
                if final is not None and final.bool_param:
                    return received
        finally:
            client.stop_stream()
    return send


def _sse_poster(target: Target, model: str, entry: Mapping[str, np.ndarray]):
    """One generation through HTTP generate_stream, read to its end; returns the bytes."""
    body = json.dumps(generate_json(entry)).encode()
    scheme = "https" if target.ssl else "http"
    request = urllib.request.Request(
        f"{scheme}://{target.url('http')}/v2/models/{model}/generate_stream", data=body,
        headers={"Content-Type": "application/json", **target.headers})
    context = None
    if target.ssl:
        tls = target.tls
        context = ssl.create_default_context(cafile=tls.ca if tls else None)
        if tls is not None and tls.cert is not None:
            context.load_cert_chain(tls.cert, tls.key)

    def send() -> int:
        with urllib.request.urlopen(request, timeout=target.timeout_s or 30,
                                    context=context) as answer:
            text = answer.read()
        for event in text.split(b"\n\n"):
            if event.startswith(b"data: ") and b'"error"' in event:
                raise RuntimeError(json.loads(event[6:]).get("error", event.decode()))
        return len(text)
    return send


def _time_requests(send, repeats: int) -> dict:
    """Time ``send()`` (one request, returning the answer's bytes) after a warm-up."""
    latencies_ms, received = [], 0
    try:
        send()  # warm-up: connection set-up, first execution
        for _ in range(repeats):
            start = time.perf_counter_ns()
            received = send()
            latencies_ms.append((time.perf_counter_ns() - start) / 1e6)
    except Exception as exc:  # report, don't crash: a probe shows every model's state
        return {"latency_ms": "-", "response_bytes": "-",
                "status": f"{classify(exc)}: {message_of(exc)[:80]}"}
    return {"latency_ms": f"{np.median(latencies_ms):.2f}", "response_bytes": received,
            "status": "ok"}
