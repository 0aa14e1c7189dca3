"""What a transport sends and what a stream brings back.

A request is built once, before the load starts; a stream's answer is its responses' times.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Prepared:
    """One prebuilt request: the bytes (or message) the transport sends, and its size.

    ``expected`` holds the outputs the answer must carry under ``--validate`` (the payload's
    ``validation_data`` for this entry); None when the answer is only counted. ``tokens_in``:
    a generation's prompt length (`tritonload.load.llm`).
    """

    model: str
    request: Any
    bytes_sent: int
    expected: Mapping[str, np.ndarray] | None = None
    tokens_in: int | None = None


@dataclass(slots=True)
class StreamAnswer:
    """What a generation's stream got: per response, when it arrived and its size.

    Both streaming transports fill it: gRPC's ModelStreamInfer (`grpc_wire`) and HTTP's
    generate_stream (`tritonload.wire.sse`).
    """

    arrivals_ns: list[int] = field(default_factory=list)  # time.perf_counter_ns()
    sizes: list[int] = field(default_factory=list)
    #: The first error a response carried (the model's message), if any.
    error: str | None = None
    #: The responses themselves (serialized messages, or events), when kept.
    messages: list[bytes] | None = None
