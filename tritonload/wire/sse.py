"""HTTP generations: Triton's ``generate_stream`` endpoint, read event by event.

A decoupled model cannot answer ``/infer``; over HTTP it streams through Triton's generate
extension: ``POST /v2/models/<model>/generate_stream`` with a JSON body naming the inputs
(``{"text_input": "...", "max_tokens": 64}``), answered with server-sent events, one
``data: {...}`` event per response, in a chunked body. Triton closes the connection after
each generation (``Connection: close``, seen on this build), so every generation opens its
own: `tritonload.wire.sockets.Connections` hands out a fresh one when none is idle.

Each event is timed as its chunk is read whole (`HttpGenerateTransport.stream`), not when
the body ends, so an event's time is its token's arrival, as over gRPC
(`tritonload.wire.grpc_wire.GrpcConnection.stream_call`). An event holding ``"error"`` is the
model's error (`StreamAnswer.error`); a non-200 answer raises like any HTTP request.
"""

from __future__ import annotations

import json
import time
from urllib.parse import quote

from tritonclient.utils import InferenceServerException

from tritonload.triton.payloads import Payload
from tritonload.triton.prompts import generate_json
from tritonload.wire.http import (
    HttpTransport,
    error_message,
    read_body,
    read_chunked,
    read_head,
    request_head,
)
from tritonload.wire.prepared import Prepared, StreamAnswer


class HttpGenerateTransport(HttpTransport):
    """Generations over HTTP's generate_stream, one connection per generation in flight."""

    protocol = "http"

    def prepare(self, payload: Payload) -> list[Prepared]:
        """Each payload entry as a complete generate_stream request (head and JSON body)."""
        uri = f"/v2/models/{quote(payload.model)}/generate_stream"
        prepared = []
        for entry in payload.entries:
            body = json.dumps(generate_json(entry), separators=(",", ":")).encode()
            head = request_head(uri, self.host, self.headers, len(body), None,
                                "application/json")
            prepared.append(Prepared(payload.model, head + body, len(body)))
        return prepared

    def stream(self, prepared: Prepared) -> StreamAnswer:
        """One generation: every event's arrival and size. Raises on a non-200 answer."""
        connections = self.connections
        sock = connections.get()
        answer = StreamAnswer()
        try:
            sock.sendall(prepared.request)
            head = read_head(sock)
            status, chunked, keep_alive, body = head[0], head[2], head[3], head[5]
            if status != 200 or not chunked:  # an error answer: read whole, then raised
                _, data, keep_alive, _ = read_body(sock, *head)
                connections.give_back(sock, keep_alive)
                raise InferenceServerException(msg=error_message(data), status=str(status))
            events = _Events(answer)
            read_chunked(sock, body, events.feed)
            events.end()
        except InferenceServerException:
            raise
        except BaseException:
            sock.close()
            raise
        connections.give_back(sock, keep_alive)
        return answer


class _Events:
    """Server-sent events split out of the chunks as they arrive, each timed when whole."""

    __slots__ = ("answer", "pending")

    def __init__(self, answer: StreamAnswer) -> None:
        self.answer = answer
        self.pending = b""

    def feed(self, data: bytes) -> None:
        now = time.perf_counter_ns()
        buf = self.pending + data if self.pending else data
        start = 0
        while (end := buf.find(b"\n\n", start)) >= 0:
            self._event(buf[start:end], now)
            start = end + 2
        self.pending = bytes(buf[start:])

    def end(self) -> None:
        if self.pending.strip():
            raise ConnectionError(f"the event stream ended inside an event "
                                  f"({len(self.pending)} bytes of it)")

    def _event(self, event: bytes, now: int) -> None:
        answer = self.answer
        answer.arrivals_ns.append(now)
        answer.sizes.append(len(event))
        if b'"error"' in event and answer.error is None:
            try:
                answer.error = str(json.loads(event.partition(b"data:")[2])["error"])
            except (ValueError, KeyError, TypeError):
                answer.error = event[:200].decode(errors="replace")


