"""Locust's master/worker mode: one run directory, written on the master, fed by its workers.

Who does what:

* The **master** runs the pre-flight once (only it talks to the server's control plane) and,
  at each test start, sends the validated context to its workers (`tritonload.load.handoff`),
  ahead of Locust's own spawn messages on the same socket. It owns the run directory, the
  server-stats sampler, ``live.json``, run.json and the SLO gate.
* A **worker** only sends load. Its `Recorder` forwards its rows to the master at least once a
  second (and every `WORKER_FLUSH_ROWS` rows) as Arrow IPC stream bytes, which msgpack carries
  as they are, together with its cumulative per-model HDR histograms. At its test stop it
  sends the rest, then its arrival counts and CPU samples (`DONE_MESSAGE`).

The master keeps the rows as Arrow tables (`Recorder.add_batch`), so the final numbers come
from the union of every worker's records. Live per-model percentiles come from the merge of
each worker's latest histogram: exact to HDR's 3 digits, at a cost per tick instead of per
request. The same messages work across hosts: nothing is shared but Locust's socket.

Ordering at the end: Locust's ``quit`` fires the master's ``test_stop`` before it tells any
worker, so `Collector.finish` sends Locust's own "stop" to each live worker and waits for
their `DONE_MESSAGE` (their last rows come before it). A worker that dies (Locust marks it
missing after three lost heartbeats) or never answers is recorded as lost in run.json, with
what it had sent; the run goes on as Locust decides.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import gevent
import pyarrow as pa
import pyarrow.compute as pc
from hdrh.histogram import HdrHistogram

from tritonload.core import schema
from tritonload.load.arrivals import ArrivalLedger
from tritonload.load.context import ATTRIBUTE, RunContext, attach
from tritonload.load.handoff import context_from_message, context_message
from tritonload.load.live import ClientCpu
from tritonload.load.recorder import Recorder, new_histogram

log = logging.getLogger(__name__)

CONTEXT_MESSAGE = "tritonload_context"
RECORDS_MESSAGE = "tritonload_records"
#: A worker's last word of a test: every record it had is sent.
DONE_MESSAGE = "tritonload_done"
#: How long the master waits for the workers' last batches before writing without them.
FINAL_BATCH_TIMEOUT_S = 15.0
#: Rows per worker message at most: small enough for the master's live view to stay current.
WORKER_FLUSH_ROWS = 2_000
#: A worker forwards what it has at least this often (and samples its CPU time).
WORKER_TICK_S = 1.0


def role(environment: Any) -> str:
    """``"master"``, ``"worker"`` or ``"local"`` for this Locust process."""
    from locust.runners import MasterRunner, WorkerRunner

    runner = environment.runner
    if isinstance(runner, MasterRunner):
        return "master"
    if isinstance(runner, WorkerRunner):
        return "worker"
    return "local"


def encode(records: Mapping[str, list[Any]] | pa.Table) -> bytes:
    """Request records (columns or a table) → Arrow IPC stream bytes (the REQUESTS schema)."""
    table = records if isinstance(records, pa.Table) else pa.table(dict(records),
                                                                   schema=schema.REQUESTS)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema.REQUESTS) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def decode(data: bytes) -> pa.Table:
    """Arrow IPC stream bytes → a table of request records."""
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


def _identity() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid()}


# -- the worker side -------------------------------------------------------------------------

class WorkerTest:
    """A worker's side of one test: its records forwarded, at least once a second."""

    def __init__(self, environment: Any) -> None:
        self.environment = environment
        self.runner = environment.runner
        self.recorder = Recorder(None, flush_rows=WORKER_FLUSH_ROWS,
                                 worker=str(self.runner.client_id),
                                 write_part=self._send).register(environment)
        self.cpu = ClientCpu()
        self.cpu.sample()
        self._greenlet = gevent.spawn(self._tick)

    def _send(self, columns: Mapping[str, list[Any]] | pa.Table) -> None:
        histograms = [[model, protocol, h.encode()]
                      for (model, protocol), h in self.recorder.histograms.items()]
        self.runner.send_message(RECORDS_MESSAGE, {"records": encode(columns),
                                                   "histograms": histograms, **_identity()})

    def _tick(self) -> None:
        while True:
            gevent.sleep(WORKER_TICK_S)
            self.cpu.sample()
            self.recorder.flush()

    def finish(self, arrivals: ArrivalLedger | None) -> None:
        """Users stopped: send the last rows, then the arrival counts and CPU samples."""
        self._greenlet.kill()
        self.environment.events.request.remove_listener(self.recorder.on_request)
        self.cpu.sample()
        self.recorder.flush()
        self.runner.send_message(DONE_MESSAGE, {
            "arrivals": arrivals.rows() if arrivals else [], "client_cpu": self.cpu.document(),
            **_identity()})
        # Locust's final stats now, as Locust itself does at "quit", rather than at its next
        # 3 s report: the master waits for them, and every distributed run ended 2 s late.
        send_stats = getattr(self.runner, "_send_stats", None)
        if send_stats is not None:
            send_stats()


class Worker:
    """A worker process: takes the master's context, and runs a `WorkerTest` per test."""

    def __init__(self, environment: Any) -> None:
        self.environment = environment
        self.test: WorkerTest | None = None
        environment.runner.register_message(CONTEXT_MESSAGE, self.on_context)

    def on_context(self, msg: Any, **_: Any) -> None:
        """The master's validated context (sent before its spawn message)."""
        env = self.environment
        index = int(getattr(env.runner, "worker_index", 0) or 0)
        attach(env, context_from_message(msg.data, env.user_classes, index))

    def start_test(self) -> None:
        """A test starts on this worker."""
        self.test = WorkerTest(self.environment)

    def stop_test(self) -> None:
        """The worker's users stopped."""
        test, self.test = self.test, None
        if test is not None:
            context: RunContext | None = getattr(self.environment, ATTRIBUTE, None)
            test.finish(context.arrivals if context else None)


# -- the master side -------------------------------------------------------------------------

@dataclass
class WorkerRecord:
    """What the master knows of one worker during a test (run.json's ``workers``)."""

    host: str = ""
    pid: int | None = None
    users: int = 0  # the most users it reported running
    records: int = 0
    last_record_ns: int | None = None  # the latest request start among its records
    state: str = "running"  # then "done", or "lost"
    client_cpu: dict | None = None
    #: Its latest cumulative histograms, ``[model, protocol, encoded]`` (msgpack has no tuple
    #: keys).
    histograms: list = field(default_factory=list)

    def document(self) -> dict[str, Any]:
        """For run.json."""
        return {"host": self.host, "pid": self.pid, "users": self.users,
                "records": self.records, "last_record_ns": self.last_record_ns,
                "state": self.state, "client_cpu": self.client_cpu}


class Collector:
    """The master's side: sends the context, takes in batches, waits for the last ones."""

    def __init__(self, environment: Any, recorder_of: Any, ledger_of: Any) -> None:
        self.environment = environment
        self.runner = environment.runner
        self.recorder_of = recorder_of  # () -> the current test's Recorder, or None
        self.ledger_of = ledger_of  # () -> the run's ArrivalLedger
        self.workers: dict[str, WorkerRecord] = {}
        self._context: dict[str, Any] | None = None
        self.runner.register_message(RECORDS_MESSAGE, self.on_records)
        self.runner.register_message(DONE_MESSAGE, self.on_done)
        environment.events.worker_report.add_listener(self.on_report)
        environment.events.worker_connect.add_listener(self.on_connect)

    def _worker(self, client_id: Any) -> WorkerRecord:
        return self.workers.setdefault(str(client_id), WorkerRecord())

    def start_test(self, context: RunContext, rate_users: int) -> None:
        """A test starts: forget the last one's workers; send every worker the context."""
        self.workers = {}
        self._context = context_message(context, rate_users)
        self.runner.send_message(CONTEXT_MESSAGE, self._context)

    def on_connect(self, client_id: str, **_: Any) -> None:
        """A worker joined mid-test: it gets the context before any spawn message."""
        if self._context is not None:
            self.runner.send_message(CONTEXT_MESSAGE, self._context, client_id)

    def on_report(self, client_id: str, data: Mapping[str, Any], **_: Any) -> None:
        """Locust's periodic worker report: keep the most users the worker ran."""
        worker = self._worker(client_id)
        worker.users = max(worker.users, int(data.get("user_count") or 0))

    def on_records(self, msg: Any, **_: Any) -> None:
        """One worker batch (Locust calls this on the master's message loop)."""
        table = decode(msg.data["records"])
        worker = self._worker(msg.node_id)
        worker.host, worker.pid = msg.data.get("host", ""), msg.data.get("pid")
        worker.histograms = list(msg.data.get("histograms") or [])
        recorder = self.recorder_of()
        if recorder is None:  # a batch after the run was written: said, not dropped silently
            log.warning("%d records arrived after the run ended", table.num_rows)
            return
        worker.records += table.num_rows
        latest = pc.max(table.column("start_ns")).as_py()
        if latest is not None:
            worker.last_record_ns = max(worker.last_record_ns or 0, latest)
        recorder.add_batch(table)

    def on_done(self, msg: Any, **_: Any) -> None:
        """A worker sent its last batch, arrival counts and CPU samples."""
        worker = self._worker(msg.node_id)
        worker.state = "done"
        worker.host, worker.pid = msg.data.get("host", ""), msg.data.get("pid")
        worker.client_cpu = msg.data.get("client_cpu")
        arrivals = msg.data.get("arrivals") or []
        if arrivals:
            self.ledger_of().add_rows(arrivals)

    def merged_histograms(self) -> dict[tuple[str, str], HdrHistogram]:
        """Per (model, protocol), the merge of every worker's latest histogram."""
        merged: dict[tuple[str, str], HdrHistogram] = {}
        for worker in list(self.workers.values()):
            for model, protocol, encoded in worker.histograms:
                key = (model, protocol)
                if key not in merged:
                    merged[key] = new_histogram()
                merged[key].decode_and_add(encoded)
        return merged

    def finish(self, stats: Any, timeout_s: float = FINAL_BATCH_TIMEOUT_S) -> list[str]:
        """Stop every live worker, wait for its last rows; returns the ids of lost workers.

        Then let the workers' final Locust stats land (sent right after `DONE_MESSAGE`):
        Locust's CSVs, written at once, missed the last report (788 of 1,653 requests in
        one run).
        """
        from locust.rpc import Message
        from locust.runners import STATE_MISSING

        live = {str(c.id) for c in self.runner.clients.all if c.state != STATE_MISSING}
        for client_id in sorted(live - self.done):
            self.runner.server.send_to_client(Message("stop", None, client_id))
        deadline = time.monotonic() + timeout_s
        while live - self.done and time.monotonic() < deadline:
            gevent.sleep(0.05)
        lost = sorted((set(self.workers) | live) - self.done)
        for client_id in lost:
            self._worker(client_id).state = "lost"
        if lost:
            log.warning("lost worker(s) %s: their records up to then are kept", ", ".join(lost))
            return lost
        recorder = self.recorder_of()
        deadline = time.monotonic() + 5.0
        while (recorder is not None and stats.total.num_requests < recorder.count
               and time.monotonic() < deadline):
            gevent.sleep(0.05)
        return lost

    @property
    def done(self) -> set[str]:
        """Workers that sent their last batch this test."""
        return {k for k, w in self.workers.items() if w.state == "done"}

    def document(self) -> dict[str, dict[str, Any]]:
        """run.json's ``workers``: each worker's host, users, records and fate."""
        return {k: w.document() for k, w in sorted(self.workers.items())}
