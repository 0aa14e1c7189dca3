"""Locust users for Triton: model mix, sync/async/open loops, exact timing, one per protocol.

Each protocol's user only names its transport (`tritonload.wire`): an object with
``prepare(payload)`` (prebuild every request once), ``send(prepared) -> bytes received`` (one
blocking, greenlet-friendly request that raises on failure) and ``close()``. Settings, the
target and the payloads come from the frozen `RunContext` the session attached to the
environment (`tritonload.load.context`), so users never import the session.

Sync mode runs one request at a time in the user's own greenlet. Async mode keeps
``max_in_flight`` requests in flight, each sender a greenlet of a per-user pool; both
transports block only the calling greenlet (gevent sockets), so the sends are truly concurrent.

In both closed loops a request's Locust event (Locust's statistics, tritonload's recorder)
fires once every user woken by an answer has sent its next request (`Deferred`), not between
an answer and the next send. All users share one thread, so when a batch's answers arrive
together, each user's bookkeeping delayed every later user's next send: on
``image_classifier`` at 8 sync gRPC users in shared memory (2 ms batching delay), the
requests of one round spread past the delay, and the server ran batches of 4.1–5.3 on
average (4 runs, perf_analyzer 6.5); deferred, 5.0–6.5, with 17% more requests served
(median of 4 alternated runs each; with no bookkeeping at all, 6.2–7.6). The timings are
taken before the event fires, so deferring it changes no number.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable
from typing import Any

import gevent
from gevent.pool import Pool
from locust import User, constant, task

from tritonload.core.errors import classify, message_of, status_of
from tritonload.load.arrivals import OpenLoopSchedule
from tritonload.load.context import context_of
from tritonload.wire.grpc import GrpcTransport
from tritonload.wire.http import HttpTransport

# A task returns to Locust about this often, so user-count changes apply promptly.
TASK_SLICE_S = 1.0
#: The longest wait of ``--error-backoff``: a target back from an outage is found within it.
MAX_BACKOFF_S = 5.0


class RequestFailed(Exception):
    """What Locust sees for a failed request: ``kind: message``, grouped by kind."""


class Deferred:
    """A closed loop's request events, fired once every user ready to send has sent.

    An answer's event is queued here, and fires from a callback of gevent's loop
    (``loop.run_callback``): callbacks run after the loop has woken every greenlet whose
    answer arrived, so each of them sends its next request before any event's listeners
    run. Listeners then run in the loop's callback, not in a greenlet, so they must not
    block (gevent raises BlockingSwitchOutError for a listener that waits on I/O). An
    exception a listener raises there (Locust's StopUser, say) is kept, and raised from the
    user's loop by `raise_kept`.
    """

    __slots__ = ("events", "fire", "kept", "scheduled")

    def __init__(self, fire: Any) -> None:
        self.fire = fire
        self.events: list[dict[str, Any]] = []
        self.kept: BaseException | None = None
        self.scheduled = False

    def add(self, event: dict[str, Any]) -> None:
        """Queue one request's event; it fires at the loop's next callback round."""
        self.events.append(event)
        if not self.scheduled:
            self.scheduled = True
            gevent.get_hub().loop.run_callback(self)

    def __call__(self) -> None:
        """Fire the queued events (the loop's callback, or a loop ending)."""
        self.scheduled = False
        events, self.events = self.events, []
        for event in events:
            try:
                self.fire(**event)
            except Exception as exc:  # Locust's control exceptions: raised by the loop
                self.kept = self.kept or exc

    def raise_kept(self) -> None:
        """Raise what a listener raised while the events fired, once."""
        if self.kept is not None:
            kept, self.kept = self.kept, None
            raise kept


class TritonUser(User):
    """Abstract Locust user sending a weighted model mix to Triton.

    Settings (class attributes; the matching command-line option wins when given):

    * ``mix``: ``{"model": weight}`` or ``"model:weight,..."`` (``--mix``)
    * ``mode``: ``"sync"`` (one request in flight) or ``"async"`` (``--mode``)
    * ``max_in_flight``: requests in flight per user in async mode (``--max-in-flight``)
    * ``rate``, ``arrival``: open loop (``mode = "open"``): total requests per second of the
      run, split evenly over its users (on every worker), and ``"poisson"`` or
      ``"constant"`` spacing; or ``"replay"``: the payload files' timestamps are the
      schedule (`tritonload.load.arrivals.ReplayTrace`)
    * ``timeout_s``: per-request timeout in seconds (``--request-timeout``)
    * ``headers``: extra request headers, e.g. auth (``--header NAME=VALUE``)
    * ``error_backoff_s``: after a failure, wait this long before the next request, doubling
      up to `MAX_BACKOFF_S` while failures go on (``--error-backoff``; 0 = off). Each
      sender backs off on its own; closed loops only (an open loop keeps its schedule).
    """

    abstract = True
    protocol = ""
    mix: dict[str, float] | str = {}
    mode = "sync"
    max_in_flight = 8
    rate: float | None = None
    arrival = "poisson"
    timeout_s = 30.0
    headers: dict[str, str] = {}
    error_backoff_s = 0.0
    wait_time = constant(0)  # closed loop: no think time

    _ids = itertools.count()
    transport: Any = None
    pool: Pool | None = None

    def on_start(self) -> None:
        """Resolve settings, open the transport and prebuild every request."""
        context = context_of(self.environment)
        self.settings = context.settings[type(self)]
        self.user_id = next(TritonUser._ids)
        self.rng = random.Random(context.seed + self.user_id)
        self.transport = self.make_transport(self.settings.target_of(context.target))
        self.prepared = {model: self.transport.prepare(context.payloads[model])
                         for model in self.settings.mix.models}
        self.requests = {model: itertools.cycle(p) for model, p in self.prepared.items()}
        self.pool = Pool(self.settings.max_in_flight) if self.settings.mode != "sync" else None
        self.fire = self.environment.events.request.fire
        if self.settings.mode == "open":
            self.schedule = OpenLoopSchedule(
                self, context.arrivals, context.rate_users,
                context.replay if self.settings.arrival == "replay" else None)

    def on_stop(self) -> None:
        """Drop in-flight requests and close the connection, so the process can exit.

        The senders die before the transport closes: a sender woken by an answer after a
        non-blocking kill found no transport, failed at once without yielding, and so never
        received the kill (1.5 million "failures" in 15 s, at 32 in flight per user).
        """
        if self.pool is not None:
            self.pool.kill(block=True, timeout=5.0)
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    def make_transport(self, target: Any) -> Any:
        """The protocol's transport; subclasses implement it."""
        raise NotImplementedError

    def exchange(self, prepared: Any, origin_ns: int, fields: dict[str, Any]) -> int:
        """Send one request; returns the bytes received, and may add record ``fields``.

        ``origin_ns`` is when the request's latency counts from (perf_counter ns). The LLM
        users stream here (`tritonload.load.llm`); ``fields`` survive a raise.
        """
        return self.transport.send(prepared)

    @task
    def send_requests(self) -> None:
        """Send requests for one time slice, then return to Locust's scheduler."""
        deadline = time.monotonic() + TASK_SLICE_S
        if self.settings.mode == "open":
            self.schedule.run_until(deadline)
        elif self.pool is None:
            self._closed_loop(lambda: time.monotonic() < deadline)
        else:
            while self.pool.free_count():  # async: max_in_flight senders, for the user's life
                self.pool.spawn(self._send_forever)
            gevent.sleep(max(0.0, deadline - time.monotonic()))

    def _send_forever(self) -> None:
        """One async-mode sender: a request in flight at all times (the pool bounds them).

        Long-lived senders rather than a greenlet per request: spawning one cost about 65 µs
        of client CPU per request.
        """
        self._closed_loop(lambda: self.transport is not None)

    def _closed_loop(self, going: Callable[[], bool]) -> None:
        """Requests back to back while ``going()``; their events fire through `Deferred`.

        A failure's event fires before any back-off wait, and whatever is left when the loop
        ends, or is killed, fires on the way out: no request goes unrecorded.
        """
        deferred = Deferred(self.fire)
        failures = 0
        try:
            while going():
                ok = self.request(deferred=deferred)
                if not ok:
                    deferred()
                deferred.raise_kept()
                failures = self._back_off(failures, ok)
        finally:
            deferred()
        deferred.raise_kept()

    def _back_off(self, failures: int, ok: bool) -> int:
        """With ``--error-backoff``, wait after a failure; returns the failures in a row."""
        if ok or not self.settings.error_backoff_s:
            return 0
        gevent.sleep(min(self.settings.error_backoff_s * 2 ** min(failures, 16), MAX_BACKOFF_S))
        return failures + 1

    def request(self, intended_start_ns: int | None = None,
                intended_perf_ns: int | None = None, prepared: Any = None,
                deferred: Deferred | None = None) -> bool:
        """Send one request of the mix and fire Locust's request event with exact timings.

        In open loop, ``intended_*`` carry the scheduled send time, so the latency includes
        any time the request waited behind a slow server (no coordinated omission); a replay
        names the very request (``prepared``). With ``deferred`` (a closed loop), the event
        waits there for the next request's send. Returns whether it succeeded.
        """
        if prepared is None:
            prepared = next(self.requests[self.settings.mix.draw(self.rng)])
        start_ns = time.time_ns()
        started = time.perf_counter_ns()
        origin = intended_perf_ns if intended_perf_ns is not None else started
        exception = None
        received = 0
        fields: dict[str, Any] = {}
        try:
            received = self.exchange(prepared, origin, fields)
        except gevent.GreenletExit:
            raise
        except Exception as exc:  # every failure is recorded, classified, never raised
            exception = exc
        ended = time.perf_counter_ns()
        context = {
            "intended_start_ns": intended_start_ns if intended_start_ns is not None else start_ns,
            "start_ns": start_ns,
            "latency_ns": ended - origin,
            "service_ns": ended - started,
            "mode": self.settings.mode,
            "bytes_sent": prepared.bytes_sent,
            "user_id": self.user_id,
            **fields,
        }
        if exception is not None:
            kind = classify(exception)
            context.update(error_kind=kind, triton_status=status_of(exception),
                           triton_message=message_of(exception))
            exception = RequestFailed(f"{kind}: {context['triton_message'][:200]}")
        event = {"request_type": self.protocol, "name": prepared.model,
                 "response_time": (ended - origin) / 1e6, "response_length": received,
                 "exception": exception, "context": context}
        if deferred is None:
            self.fire(**event)
        else:
            deferred.add(event)
        return exception is None



class TritonGrpcUser(TritonUser):
    """Locust user sending the model mix over gRPC (see `TritonUser` for its settings)."""

    abstract = True
    protocol = "grpc"

    def make_transport(self, target: Any) -> GrpcTransport:
        """Connections on tritonload's gRPC wire client, one per request in flight."""
        return GrpcTransport(target)


class TritonHttpUser(TritonUser):
    """Locust user sending the model mix over HTTP/REST (see `TritonUser` for its settings)."""

    abstract = True
    protocol = "http"

    def make_transport(self, target: Any) -> HttpTransport:
        """Keep-alive HTTP/1.1 connections, one per request in flight."""
        return HttpTransport(target)
