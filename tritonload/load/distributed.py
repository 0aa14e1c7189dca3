"""Locust's master/worker mode: workers stream their request records to the master.

WORK IN PROGRESS (issue 11, branch wip/issue-11). One run directory per run, written on the
master: each worker's `Recorder` sends its full buffers as Arrow IPC stream bytes in a Locust
message (msgpack carries bytes as they are), and the master's `Recorder` takes them in as if
it had seen the requests (`Recorder.add_records`), so its parts, counts, HDR histograms and
live window cover every worker. Ordering: a worker's last batch is sent from its
``test_stop``, before it tells the master it stopped; the master fires its own ``test_stop``
only when every worker has reported stopped, so the last batch is in before run.json is
finalised.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import gevent
import pyarrow as pa

from tritonload.core import schema

log = logging.getLogger(__name__)

RECORDS_MESSAGE = "tritonload_records"
#: A worker's last word of a test: every record it had is sent.
DONE_MESSAGE = "tritonload_done"
#: How long the master waits for the workers' last batches before writing without them.
FINAL_BATCH_TIMEOUT_S = 15.0
#: Rows per worker message: small enough for the master's live view to stay current.
WORKER_FLUSH_ROWS = 2_000


def role(environment: Any) -> str:
    """``"master"``, ``"worker"`` or ``"local"`` for this Locust process."""
    from locust.runners import MasterRunner, WorkerRunner

    runner = environment.runner
    if isinstance(runner, MasterRunner):
        return "master"
    if isinstance(runner, WorkerRunner):
        return "worker"
    return "local"


def encode(columns: dict[str, list[Any]]) -> bytes:
    """Column lists → Arrow IPC stream bytes (the REQUESTS schema)."""
    table = pa.table(columns, schema=schema.REQUESTS)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema.REQUESTS) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def decode(data: bytes) -> dict[str, list[Any]]:
    """Arrow IPC stream bytes → column lists."""
    table = pa.ipc.open_stream(pa.py_buffer(data)).read_all()
    return {name: table.column(name).to_pylist() for name in schema.REQUESTS.names}


class Forwarder:
    """Worker side: the `Recorder`'s ``write_part`` that sends a buffer to the master."""

    def __init__(self, runner: Any) -> None:
        self.runner = runner
        self.sent_rows = 0

    def __call__(self, columns: dict[str, list[Any]]) -> None:
        """Send one buffer."""
        self.runner.send_message(RECORDS_MESSAGE, encode(columns))
        self.sent_rows += len(columns["start_ns"])


class Collector:
    """Master side: feeds every worker batch into the current test's recorder."""

    def __init__(self, runner: Any, recorder_of: Any) -> None:
        self.runner = runner
        self.recorder_of = recorder_of
        self.lost_rows = 0
        self.done: set[str] = set()
        runner.register_message(RECORDS_MESSAGE, self.on_records)
        runner.register_message(DONE_MESSAGE, self.on_done)

    def on_done(self, msg: Any, **_: Any) -> None:
        """A worker sent its last batch."""
        self.done.add(str(msg.node_id))

    def wait_for_workers(self, timeout_s: float = FINAL_BATCH_TIMEOUT_S) -> list[str]:
        """Have every worker stop and send its last batch; the ids that never did.

        Locust's ``quit`` fires the master's ``test_stop`` *before* telling the workers, so
        they would still be sending. Locust's own "stop" message makes each worker stop its
        users, whose ``test_stop`` sends the last batch and then `DONE_MESSAGE`; this waits
        for those (the master's message loop keeps running meanwhile).
        """
        from locust.rpc import Message

        expected = {str(c.id) for c in self.runner.clients.all}
        for client_id in expected - self.done:
            self.runner.server.send_to_client(Message("stop", None, client_id))
        deadline = time.monotonic() + timeout_s
        while expected - self.done and time.monotonic() < deadline:
            gevent.sleep(0.05)
        return sorted(expected - self.done)

    def wait_for_stats(self, stats: Any, records: int, timeout_s: float = 5.0) -> None:
        """Let the workers' final Locust stats (sent right after `DONE_MESSAGE`) land.

        Locust's CSVs and summary are the master's aggregate of what workers reported; written
        at once, they missed the last report (788 of 1,653 requests in one run).
        """
        deadline = time.monotonic() + timeout_s
        while stats.total.num_requests < records and time.monotonic() < deadline:
            gevent.sleep(0.05)

    def reset(self) -> None:
        """A new test starts."""
        self.done.clear()

    def on_records(self, msg: Any, **_: Any) -> None:
        """One worker batch (Locust calls this on the master's message loop)."""
        columns = decode(msg.data)
        recorder = self.recorder_of()
        if recorder is None:  # a batch after the test ended: counted, not silently dropped
            self.lost_rows += len(columns["start_ns"])
            log.warning("%d records arrived after the run ended", len(columns["start_ns"]))
            return
        recorder.add_records(columns)
