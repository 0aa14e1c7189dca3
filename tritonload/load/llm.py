"""LLM users: generations streamed from decoupled models, timed token by token.

`TritonLLMUser` is a `TritonUser` (the same sync, async and open loops, the same record per
request) whose request is a generation: one ModelStreamInfer stream on tritonload's gRPC wire
client (`tritonload.wire.grpc_wire.GrpcConnection.stream_call`), each response one token;
`TritonHttpLLMUser` streams the same through HTTP's generate_stream (`tritonload.wire.sse`).
The record adds what LLM planners read, from timestamps taken as each token's bytes were read:

* ``ttft_us``: time to first token, from the send (the scheduled send, in open loop);
* ``itl_us``: the gaps between consecutive tokens (inter-token latency; the first gap is the
  time to second token);
* ``tokens_in`` (the prompt's words) and ``tokens_out`` (token responses received).

The latency of the record is the generation's end to end. A stream the server ends with an
error after some tokens keeps them and is error kind ``stream_aborted``; an error before the
first token is classified by its message, like any other failure.

The prompts come from pre-flight (`tritonload.triton.prompts`: ``--isl``, ``--osl``, system
prompts, ``--prompts``), prebuilt like every payload. The class's ``mix`` names generative
models only; ``--mix`` sets the classic users' mix, so that one locustfile can mix both.
"""

from __future__ import annotations

import dataclasses
from itertools import cycle, pairwise
from typing import Any

from tritonload.core.errors import StreamAborted
from tritonload.load.context import context_of
from tritonload.load.users import TritonUser
from tritonload.triton.prompts import prompt_tokens
from tritonload.wire.grpc import GrpcTransport
from tritonload.wire.sse import HttpGenerateTransport


class StreamError(Exception):
    """An error a generation's first response carried (no token arrived)."""


class TritonLLMUser(TritonUser):
    """Locust user streaming generations from decoupled models over gRPC.

    Settings as `TritonUser`'s; ``mix`` defaults to the demo's ``text_generator``.
    """

    abstract = True
    protocol = "grpc"
    generative = True
    mix: dict[str, float] | str = {"text_generator": 1}

    def on_start(self) -> None:
        """As `TritonUser`, and each prebuilt request knows its prompt's length."""
        super().on_start()
        payloads = context_of(self.environment).payloads
        self.prepared = {
            model: [dataclasses.replace(p, tokens_in=prompt_tokens(entry))
                    for p, entry in zip(prepared, payloads[model].entries, strict=True)]
            for model, prepared in self.prepared.items()}
        self.requests = {model: cycle(p) for model, p in self.prepared.items()}

    def make_transport(self, target: Any) -> GrpcTransport:
        """Connections on tritonload's gRPC wire client, one per generation in flight."""
        return GrpcTransport(target)

    def exchange(self, prepared: Any, origin_ns: int, fields: dict[str, Any]) -> int:
        """One generation: the tokens' times into ``fields``; returns the bytes received."""
        answer = self.transport.stream(prepared)
        arrivals = answer.arrivals_ns
        tokens = len(arrivals) - (answer.error is not None)
        fields["tokens_in"] = prepared.tokens_in
        fields["tokens_out"] = tokens
        if tokens:
            fields["ttft_us"] = (arrivals[0] - origin_ns) / 1000.0
            fields["itl_us"] = [(b - a) / 1000.0 for a, b in pairwise(arrivals[:tokens])]
        if answer.error is not None:
            raise StreamAborted(answer.error) if tokens else StreamError(answer.error)
        return sum(answer.sizes)


class TritonHttpLLMUser(TritonLLMUser):
    """Locust user streaming generations through HTTP's generate_stream (server-sent events)."""

    abstract = True
    protocol = "http"

    def make_transport(self, target: Any) -> HttpGenerateTransport:
        """A connection per generation in flight (Triton closes it after each stream)."""
        return HttpGenerateTransport(target)
