"""The Recorder: live windows across Parquet flushes, the parts it writes, HDR percentiles."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tritonload.core import schema
from tritonload.core.numbers import summarize
from tritonload.load.recorder import Recorder, by_model, histogram_percentile_ms

T0_NS = 1_700_000_000_000_000_000


class RequestFailed(Exception):
    """Stands for `tritonload.load.users.RequestFailed` (importing users would import Locust)."""


class Feeder:
    """Fires `Recorder.on_request` the way `TritonUser.request` fires Locust's request event.

    Every request gets a distinct, known latency so rows can be traced through the recorder.
    """

    def __init__(self, recorder: Recorder, protocol: str = "grpc", mode: str = "sync") -> None:
        self.recorder = recorder
        self.protocol = protocol
        self.mode = mode
        self.fed: list[dict] = []  # the row each event should become, in order
        self._n = itertools.count()

    def send(self, model: str = "recommender", latency_us: float | None = None,
             error_kind: str | None = None, user_id: int = 0,
             generation: dict | None = None) -> dict:
        n = next(self._n)
        latency_ns = int((latency_us if latency_us is not None else 1000 + n) * 1000)
        start_ns = T0_NS + n * 1_000_000
        context = {
            "intended_start_ns": start_ns - 5_000,
            "start_ns": start_ns,
            "latency_ns": latency_ns,
            "service_ns": latency_ns - 2_000,
            "mode": self.mode,
            "bytes_sent": 512 + n,
            "user_id": user_id,
            **(generation or {}),
        }
        exception = None
        received = 8 + n
        if error_kind is not None:
            context.update(error_kind=error_kind, triton_status="StatusCode.UNAVAILABLE",
                           triton_message="connection refused")
            exception = RequestFailed(f"{error_kind}: connection refused")
            received = 0
        self.recorder.on_request(request_type=self.protocol, name=model,
                                 response_time=latency_ns / 1e6, response_length=received,
                                 exception=exception, context=context)
        row = {"intended_start_ns": start_ns - 5_000, "start_ns": start_ns,
               "latency_us": latency_ns / 1000.0, "service_us": (latency_ns - 2_000) / 1000.0,
               "model": model, "protocol": self.protocol, "mode": self.mode,
               "ok": error_kind is None, "error_kind": error_kind or "",
               "bytes_sent": 512 + n, "bytes_received": received, "user_id": user_id,
               "worker": self.recorder.worker,
               **{c: (generation or {}).get(c) for c in schema.GENERATION_COLUMNS}}
        self.fed.append(row)
        return row


def _window(rows: list[dict]) -> tuple[list[float], list[bool]]:
    return [r["latency_us"] for r in rows], [r["ok"] for r in rows]


def _parts(run_dir) -> list[pd.DataFrame]:
    directory = run_dir / schema.REQUESTS_DIR
    return [pq.read_table(p).to_pandas() for p in sorted(directory.iterdir())]


def test_live_window_keeps_rows_across_flushes(tmp_path):
    recorder = Recorder(tmp_path, flush_rows=4)
    feed = Feeder(recorder)
    for _ in range(3):
        feed.send()
    assert recorder.take_live_window() == _window(feed.fed[0:3])
    # 7 more rows: the buffer (3 taken rows) flushes at 4 and again at 8, leaving 2 buffered.
    feed.send()
    feed.send(error_kind="unavailable")
    for _ in range(5):
        feed.send()
    assert recorder._parts == 2
    latencies, oks = recorder.take_live_window()
    assert (latencies, oks) == _window(feed.fed[3:10])  # all 7, failures included, in order
    assert oks.count(False) == 1
    assert recorder.take_live_window() == ([], [])  # nothing is returned twice
    # After a take, then a flush, the window still starts where the take stopped.
    feed.send()
    feed.send()  # 4 buffered: flush (the 2 untaken rows are carried over)
    feed.send()
    assert recorder._parts == 3
    assert recorder.take_live_window() == _window(feed.fed[10:13])


def test_live_windows_add_up_to_every_request_fed(tmp_path):
    """Whatever the flush/take interleaving, the windows concatenate to exactly the rows fed."""
    recorder = Recorder(tmp_path, flush_rows=7)
    feed = Feeder(recorder)
    taken: list[tuple[list[float], list[bool]]] = []
    kinds = itertools.cycle([None, None, None, "timeout", None])
    for burst in (1, 6, 7, 8, 15, 0, 3, 22):
        for _ in range(burst):
            feed.send(error_kind=next(kinds))
        taken.append(recorder.take_live_window())
    recorder.flush()
    assert recorder.take_live_window() == ([], [])
    latencies = [v for window, _ in taken for v in window]
    oks = [ok for _, window in taken for ok in window]
    assert (latencies, oks) == _window(feed.fed)
    for (window_latencies, window_oks) in taken:
        assert len(window_latencies) == len(window_oks)


def test_live_window_feeds_summarize(tmp_path):
    recorder = Recorder(tmp_path, flush_rows=3)
    feed = Feeder(recorder)
    for latency in (100.0, 200.0, 300.0, 400.0):
        feed.send(latency_us=latency)
    feed.send(latency_us=9_999_999.0, error_kind="timeout")  # a failure: not a latency
    numbers = summarize(*recorder.take_live_window(), 2.0)
    assert (numbers.requests, numbers.ok, numbers.errors) == (5, 4, 1)
    assert numbers.throughput_rps == 2.0
    assert numbers.percentile_ms(50) == 0.25


def test_parquet_parts_hold_exactly_the_rows_fed(tmp_path):
    recorder = Recorder(tmp_path, flush_rows=5, worker="w7")
    feed = Feeder(recorder, protocol="http", mode="async")
    models = itertools.cycle(["recommender", "text_classifier", "recommender"])
    for i in range(12):
        feed.send(model=next(models), error_kind="timeout" if i % 4 == 3 else None, user_id=i % 3,
                  generation={"ttft_us": 900.0 + i, "tokens_in": 40, "tokens_out": 3,
                              "itl_us": [20_000.0, 21_000.0]} if i == 6 else None)
    recorder.on_request(request_type="grpc", name="other", response_time=1.0,
                             response_length=0, context={})  # not a tritonload event: skipped
    parts = _parts(tmp_path)
    assert [len(p) for p in parts] == [5, 5]  # written every flush_rows rows
    recorder.flush()
    recorder.flush()  # nothing buffered: no empty part
    parts = _parts(tmp_path)
    assert [len(p) for p in parts] == [5, 5, 2]
    for path in sorted((tmp_path / schema.REQUESTS_DIR).iterdir()):
        assert pq.read_schema(path).remove_metadata() == schema.REQUESTS
    written = pd.concat(parts, ignore_index=True)
    expected = pd.DataFrame(feed.fed, columns=schema.REQUESTS.names)
    expected["user_id"] = expected["user_id"].astype("int32")
    generation = list(schema.GENERATION_COLUMNS)
    pd.testing.assert_frame_equal(written.drop(columns=generation),
                                  expected.drop(columns=generation))
    # A generation's row carries its numbers; every other row, nulls.
    assert written["ttft_us"].notna().tolist() == [i == 6 for i in range(12)]
    assert (written.loc[6, "ttft_us"], written.loc[6, "tokens_in"],
            written.loc[6, "tokens_out"]) == (906.0, 40, 3)
    assert list(written.loc[6, "itl_us"]) == [20_000.0, 21_000.0]
    assert recorder.count == 12


def test_errors_are_counted_by_kind_and_kept_out_of_the_histograms(tmp_path):
    recorder = Recorder(tmp_path)
    feed = Feeder(recorder)
    feed.send(latency_us=1000.0)
    for kind in ("timeout", "unavailable", "timeout"):
        feed.send(latency_us=5_000_000.0, error_kind=kind)
    feed.send(model="text_classifier", latency_us=9_000_000.0, error_kind="timeout")
    assert recorder.errors == {"timeout": 3, "unavailable": 1}
    assert recorder.count == 5
    assert recorder.histograms[("recommender", "grpc")].get_total_count() == 1
    assert _p_ms(recorder, "recommender", 100) == pytest.approx(1.0, rel=1e-3)
    assert _p_ms(recorder, "text_classifier", 95) is None  # only failures
    assert _p_ms(recorder, "never_sent", 95) is None


def _p_ms(recorder: Recorder, model: str, percentile: float) -> float | None:
    """A model's live percentile over its protocols, as live.json shows it."""
    return histogram_percentile_ms(by_model(recorder.histograms).get(model), percentile)


def test_protocols_have_their_own_histograms_and_merge_per_model(tmp_path):
    recorder = Recorder(tmp_path)
    Feeder(recorder, protocol="grpc").send(latency_us=1000.0)
    Feeder(recorder, protocol="http").send(latency_us=3000.0)
    assert sorted(recorder.histograms) == [("recommender", "grpc"), ("recommender", "http")]
    merged = by_model(recorder.histograms)["recommender"]
    assert merged.get_total_count() == 2
    assert histogram_percentile_ms(merged, 100) == pytest.approx(3.0, rel=1e-3)


def test_hdr_percentiles_match_the_exact_ones_to_three_digits(tmp_path):
    recorder = Recorder(tmp_path)
    feed = Feeder(recorder)
    rng = np.random.default_rng(7)
    latencies = rng.lognormal(mean=8.0, sigma=0.8, size=3000)  # µs, around 3 ms
    for latency in latencies:
        feed.send(latency_us=float(latency))
    for percentile in (50, 90, 95, 99, 100):
        exact_ms = np.percentile(latencies, percentile, method="inverted_cdf") / 1000
        # HDR at 3 significant digits: the value is exact to within 0.1% of itself (plus the
        # integer-µs truncation of the recorded values).
        assert _p_ms(recorder, "recommender", percentile) == pytest.approx(
            exact_ms, rel=1e-3, abs=1e-3)


def test_hdr_clamps_out_of_range_latencies(tmp_path):
    recorder = Recorder(tmp_path)
    feed = Feeder(recorder)
    feed.send(latency_us=0.2)  # below 1 µs: recorded as 1 µs
    assert _p_ms(recorder, "recommender", 100) == pytest.approx(0.001, rel=1e-3)
    assert not math.isnan(_p_ms(recorder, "recommender", 50))


def test_achieved_mix(tmp_path):
    recorder = Recorder(tmp_path)
    assert recorder.achieved_mix() == {}
    feed = Feeder(recorder)
    for model, n in (("text_classifier", 5), ("recommender", 3), ("image_classifier", 2)):
        for i in range(n):
            feed.send(model=model, error_kind="timeout" if i == 0 else None)  # failures count
    assert recorder.achieved_mix() == {"image_classifier": 0.2, "recommender": 0.3,
                                       "text_classifier": 0.5}
    assert list(recorder.achieved_mix()) == sorted(recorder.achieved_mix())


def test_batches_from_workers_are_counted_written_and_windowed(tmp_path):
    """The master's side: worker batches arrive as Arrow tables (`Recorder.add_batch`)."""
    worker = Recorder(None, write_part=lambda columns: None)
    feed = Feeder(worker)
    for _ in range(3):
        feed.send("recommender")
    feed.send("text_classifier", error_kind="timeout")
    batch = pa.table(worker._columns, schema=schema.REQUESTS)
    master = Recorder(tmp_path / "run", flush_rows=6)
    master.add_batch(batch)
    assert master.count == 4
    assert master.per_model == {"recommender": 3, "text_classifier": 1}
    assert master.errors == {"timeout": 1}
    latencies, oks = master.take_live_window()
    assert latencies == batch.column("latency_us").to_pylist() and oks == [True] * 3 + [False]
    assert not (tmp_path / "run" / schema.REQUESTS_DIR).exists()  # 4 rows < 6: buffered
    master.add_batch(batch)  # 8 rows: written as one part
    parts = sorted((tmp_path / "run" / schema.REQUESTS_DIR).iterdir())
    assert len(parts) == 1 and pq.read_table(parts[0]).num_rows == 8
    assert master.take_live_window()[0] == batch.column("latency_us").to_pylist()


def test_a_failed_write_is_said_once_and_later_rows_are_counted_not_written(tmp_path):
    calls, errors = [], []

    def full_disk(records):
        calls.append(records)
        raise OSError(28, "No space left on device")

    recorder = Recorder(tmp_path, flush_rows=2, write_part=full_disk,
                        on_write_error=errors.append)
    feed = Feeder(recorder)
    for _ in range(5):
        feed.send()
    recorder.flush()
    assert len(calls) == 1 and len(errors) == 1  # tried once, said once
    assert errors[0].errno == 28
    assert recorder.unwritten == 5 and recorder.count == 5
    assert recorder._columns["start_ns"] == []  # nothing piles up in memory
