"""Exact request records: a Locust ``request`` listener that streams rows to the run directory.

Users fire ``environment.events.request`` with a ``context`` holding the exact timings (ns) and
sizes; the recorder turns each event into one row. Rows are kept in column lists and written
as a new self-contained Parquet part every ``flush_rows`` rows, so memory stays flat and a
killed run loses at most one unflushed chunk. 20,000 rows: the buffer holds about 32 bytes
per value (a Python object and its list slot), and at 50,000 rows its filling alone made
the 30-minute soak's client RSS grow 36 MB in the first 4 minutes (50.8 MB in all, against
the 50 MB target; `benchmarks/soak.py`). Per-(model, protocol) HDR histograms (µs, 3
significant digits) give live percentiles.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from hdrh.histogram import HdrHistogram

from tritonload.core import schema
from tritonload.core.rundir import write_request_part

log = logging.getLogger(__name__)

HDR_MAX_US = 3_600_000_000  # one hour


def new_histogram() -> HdrHistogram:
    """A latency histogram in µs: 1 µs to an hour, 3 significant digits."""
    return HdrHistogram(1, HDR_MAX_US, 3)


def histogram_percentile_ms(histogram: HdrHistogram | None, percentile: float) -> float | None:
    """A percentile (ms) of a latency histogram; None when it is empty."""
    if histogram is None or histogram.get_total_count() == 0:
        return None
    return histogram.get_value_at_percentile(percentile) / 1000.0


def by_model(histograms: Mapping[tuple[str, str], HdrHistogram]) -> dict[str, HdrHistogram]:
    """Per-(model, protocol) histograms merged per model."""
    merged: dict[str, HdrHistogram] = {}
    for (model, _), histogram in histograms.items():
        if model not in merged:
            merged[model] = new_histogram()
        merged[model].add(histogram)
    return merged


class Recorder:
    """Collects one row per request event and streams them to ``<run_dir>/requests/``."""

    def __init__(self, run_dir: str | Path | None, flush_rows: int = 20_000,
                 worker: str = "local",
                 write_part: Callable[[dict[str, list[Any]] | pa.Table], None] | None = None,
                 on_write_error: Callable[[OSError], None] | None = None):
        self.run_dir = Path(run_dir) if run_dir is not None else None
        # Where a full buffer goes: a Parquet part in the run directory, or (on a Locust
        # worker) a message to the master (`tritonload.load.distributed`).
        self.write_part = write_part or self._write_parquet_part
        self.flush_rows = flush_rows
        # A write that fails (a full disk) is said once, through ``on_write_error``; from
        # then on rows are counted in ``unwritten`` and dropped, so memory stays bounded and
        # the parts already written stay as they are.
        self.on_write_error = on_write_error
        self.write_error: OSError | None = None
        self.unwritten = 0
        self.worker = worker
        self.count = 0
        self.per_model: collections.Counter[str] = collections.Counter()
        self.errors: collections.Counter[str] = collections.Counter()
        self.last_error = ""  # the latest failure's message, for the outage line
        self.first_ok_ns: int | None = None  # the first success since the outage watch looked
        self.histograms: dict[tuple[str, str], HdrHistogram] = {}  # (model, protocol) →
        self._columns: dict[str, list[Any]] = {name: [] for name in schema.REQUESTS.names}
        self._parts = 0
        self._batches: list[pa.Table] = []  # `add_batch` tables not yet written
        self._batch_rows = 0
        # The live window: rows not yet returned by take_live_window(). They are the buffer
        # from ``_live_from`` on, preceded by what earlier flushes carried over.
        self._live_from = 0
        self._live_latencies: list[float] = []
        self._live_oks: list[bool] = []

    def register(self, environment: Any) -> Recorder:
        """Listen to the environment's request events."""
        environment.events.request.add_listener(self.on_request)
        return self

    def on_request(self, request_type: str, name: str, response_time: float,
                   response_length: int, exception: BaseException | None = None,
                   context: dict | None = None, **_: Any) -> None:
        """One Locust request event → one row. Events without tritonload context are skipped."""
        ctx = context or {}
        if "start_ns" not in ctx:
            return
        latency_us = ctx["latency_ns"] / 1000.0
        columns = self._columns
        columns["intended_start_ns"].append(ctx["intended_start_ns"])
        columns["start_ns"].append(ctx["start_ns"])
        columns["latency_us"].append(latency_us)
        columns["service_us"].append(ctx["service_ns"] / 1000.0)
        columns["model"].append(name)
        columns["protocol"].append(request_type)
        columns["mode"].append(ctx["mode"])
        columns["ok"].append(exception is None)
        columns["error_kind"].append(ctx.get("error_kind", ""))
        columns["bytes_sent"].append(ctx["bytes_sent"])
        columns["bytes_received"].append(response_length)
        columns["user_id"].append(ctx["user_id"])
        columns["worker"].append(self.worker)
        columns["ttft_us"].append(ctx.get("ttft_us"))
        columns["tokens_in"].append(ctx.get("tokens_in"))
        columns["tokens_out"].append(ctx.get("tokens_out"))
        columns["itl_us"].append(ctx.get("itl_us"))
        self.count += 1
        self.per_model[name] += 1
        if exception is None:
            if self.first_ok_ns is None:
                self.first_ok_ns = ctx["intended_start_ns"] + ctx["latency_ns"]
            histogram = self.histograms.get((name, request_type))
            if histogram is None:
                histogram = self.histograms[(name, request_type)] = new_histogram()
            histogram.record_value(max(1, min(int(latency_us), HDR_MAX_US)))
        else:
            self.errors[ctx.get("error_kind", "other")] += 1
            self.last_error = ctx.get("triton_message", "")
        if len(columns["start_ns"]) >= self.flush_rows:
            self.flush()

    def flush(self) -> None:
        """Write buffered rows (and batches taken in) as the next Parquet part(s)."""
        if self._batches:
            self._write(pa.concat_tables(self._batches), self._batch_rows)
            self._batches, self._batch_rows = [], 0
        rows = len(self._columns["start_ns"])
        if not rows:
            return
        self._write(self._columns, rows)
        # Rows the live window has not taken yet outlive the buffer they were in.
        self._live_latencies += self._columns["latency_us"][self._live_from:]
        self._live_oks += self._columns["ok"][self._live_from:]
        for values in self._columns.values():
            values.clear()
        self._live_from = 0
        log.debug("wrote %d request records", rows)

    def _write(self, records: dict[str, list[Any]] | pa.Table, rows: int) -> None:
        if self.write_error is None:
            try:
                self.write_part(records)
                return
            except OSError as exc:
                self.write_error = exc
                if self.on_write_error is not None:
                    self.on_write_error(exc)
        self.unwritten += rows

    def _write_parquet_part(self, records: dict[str, list[Any]] | pa.Table) -> None:
        write_request_part(self.run_dir, self._parts, records)
        self._parts += 1

    def add_batch(self, table: pa.Table) -> None:
        """Rows recorded elsewhere (a worker's batch, on the master), as if seen here.

        Kept as the Arrow table it arrived as, and counted with Arrow's kernels: 0.5 µs of
        master CPU per row, against 6 µs for rows turned back into Python lists (measured on
        2,000-row batches). No HDR here: the master merges the workers' own histograms
        (`tritonload.load.distributed.Collector`).
        """
        self._batches.append(table)
        self._batch_rows += table.num_rows
        self.count += table.num_rows
        for item in pc.value_counts(table.column("model")).to_pylist():
            self.per_model[item["values"]] += item["counts"]
        oks = table.column("ok")
        failed = pc.filter(table.column("error_kind"), pc.invert(oks))
        for item in pc.value_counts(failed).to_pylist():
            self.errors[item["values"] or "other"] += item["counts"]
        self._live_latencies += table.column("latency_us").to_pylist()
        self._live_oks += oks.to_pylist()
        if self._batch_rows >= self.flush_rows:
            self.flush()

    def take_live_window(self) -> tuple[list[float], list[bool]]:
        """Every request recorded since the last call, in order: ``(latencies_us, oks)``.

        Two lists of equal length covering successful *and* failed requests, shaped for
        `tritonload.core.numbers.summarize`; no request is lost or returned twice, however many
        flushes happened in between.

        Cost: nothing per request. The window is a slice of the column buffer from the index
        the last call stopped at; a flush, which empties the buffer, first copies the untaken
        tail of the two columns aside (``_live_latencies``/``_live_oks``), and this call
        returns and empties that carry-over. A copy per flush of at most the rows recorded
        since the last call was chosen over two extra appends per request, since the recorder
        runs on the hot path (every request event) and flushes are rare. The carry-over holds
        only untaken rows, so memory stays bounded as long as the caller keeps taking windows.
        """
        columns = self._columns
        latencies = columns["latency_us"][self._live_from:]
        oks = columns["ok"][self._live_from:]
        self._live_from = len(columns["ok"])
        if self._live_oks:
            latencies = self._live_latencies + latencies
            oks = self._live_oks + oks
            self._live_latencies, self._live_oks = [], []
        return latencies, oks

    def achieved_mix(self) -> dict[str, float]:
        """Share of requests each model actually received."""
        return {m: n / self.count for m, n in sorted(self.per_model.items())} if self.count else {}
