"""Once a second: ``live.json``, the stability windows, the client CPU time, outages.

``live.json`` (progress) and the stability windows of measured runs summarise the requests
completed since the last tick with `tritonload.core.numbers.summarize`, the same throughput
and exact-percentile definition as the run table, the SLO gate and the report. The CPU
samples go to run.json (``client_cpu``), where `tritonload.core.validity` judges whether the
load generator saturated. The outage watch (`tritonload.load.outages`) reads the recorder's
counters on the same tick.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import gevent
import numpy as np
from hdrh.histogram import HdrHistogram

from tritonload.core.numbers import Numbers, summarize
from tritonload.core.rundir import write_json_atomic
from tritonload.core.schema import LIVE_JSON
from tritonload.load.outages import OutageWatch
from tritonload.load.recorder import Recorder, by_model, histogram_percentile_ms
from tritonload.load.stability import StabilityRule


def _ms(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 3)


class StabilityWindows:
    """Cuts the run after its warm-up into windows of ``window_s`` and feeds `StabilityRule`."""

    def __init__(self, rule: StabilityRule, warmup_s: float, window_s: float) -> None:
        self.rule = rule
        self.warmup_s = warmup_s
        self.window_s = window_s
        self._start: float | None = None
        self._latencies: list[np.ndarray] = []
        self._oks: list[np.ndarray] = []

    def add(self, elapsed_s: float, now: float, latencies_us: list, oks: list) -> bool:
        """One tick's requests; True once the rule is done (stable, or out of windows)."""
        if elapsed_s < self.warmup_s:
            return False
        if self._start is None:
            self._start = now  # the first tick after warm-up may straddle it: not counted
            return False
        self._latencies.append(np.asarray(latencies_us, dtype=np.float64))
        self._oks.append(np.asarray(oks, dtype=bool))
        if now - self._start < self.window_s:
            return False
        window = summarize(np.concatenate(self._latencies), np.concatenate(self._oks),
                           now - self._start)
        self.rule.add(window.throughput_rps, _ms(window.percentile_ms(95)))
        self._start, self._latencies, self._oks = now, [], []
        return self.rule.done


class ClientCpu:
    """The process's CPU time (user + system, all threads) against the wall clock."""

    def __init__(self) -> None:
        self.samples: list[list[float]] = []

    def sample(self) -> None:
        """Record ``[wall_ns, cpu_s]`` now."""
        self.samples.append([time.time_ns(), round(time.process_time(), 6)])

    def document(self) -> dict:
        """For run.json's ``client_cpu``."""
        return {"samples": [list(s) for s in self.samples]}


class LiveTicker:
    """A greenlet: ``live.json`` every ``period_s``, stability windows, CPU samples, outages.

    The CPU time is also sampled once at `start` and at `stop`, so a short run has two.
    """

    def __init__(self, recorder: Recorder, run_dir: Path, started_ns: int,
                 stability: StabilityWindows | None, on_done: Callable[[], None],
                 period_s: float = 1.0,
                 histograms: Callable[[], Mapping[tuple[str, str], HdrHistogram]] | None = None
                 ) -> None:
        self.recorder = recorder
        # Per-(model, protocol) latency histograms since the start: the recorder's own, or on
        # a Locust master the merge of its workers' (`tritonload.load.distributed.Collector`).
        self.histograms = histograms or (lambda: recorder.histograms)
        self.path = Path(run_dir) / LIVE_JSON
        self.started_ns = started_ns
        self.stability = stability
        self.on_done = on_done
        self.period_s = period_s
        self.cpu = ClientCpu()
        self.outages = OutageWatch(started_ns)
        self._greenlet: gevent.Greenlet | None = None

    def start(self) -> None:
        """Start ticking."""
        self._last = time.monotonic()
        self.cpu.sample()
        self._greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        """Stop ticking, with a last ``live.json`` that counts every request."""
        if self._greenlet is not None:
            self.cpu.sample()
            self._greenlet.kill()
            self._greenlet = None
            self._tick()

    def _run(self) -> None:
        while True:
            gevent.sleep(self.period_s)
            self.cpu.sample()
            latencies, oks = self._tick()
            if self.stability is not None and self.stability.add(
                    self._elapsed_s(), time.monotonic(), latencies, oks):
                gevent.spawn(self.on_done)
                return

    def _elapsed_s(self) -> float:
        return (time.time_ns() - self.started_ns) / 1e9

    def _tick(self) -> tuple[list, list]:
        """Write ``live.json`` for the requests since the last tick; returns them."""
        latencies, oks = self.recorder.take_live_window()
        now = time.monotonic()
        recorder = self.recorder
        self.outages.observe(time.time_ns(), recorder.count, recorder.errors,
                             recorder.last_error, recorder.first_ok_ns)
        recorder.first_ok_ns = None
        self._write(self._elapsed_s(), summarize(latencies, oks, now - self._last))
        self._last = now
        return latencies, oks

    def _write(self, elapsed_s: float, second: Numbers) -> None:
        recorder = self.recorder
        document = {
            "elapsed_s": round(elapsed_s, 1),
            "requests": recorder.count,
            "rps": round(second.throughput_rps, 1),
            "p95_ms": _ms(second.percentile_ms(95)),
            "errors": sum(recorder.errors.values()),
            "windows": len(self.stability.rule.history) if self.stability else None,
            "unreachable_since_ns": (self.outages.current.start_ns
                                     if self.outages.current else None),
            # Since the start, per model, from the HDR histograms (µs, 3 digits).
            "p95_ms_by_model": {m: histogram_percentile_ms(h, 95)
                                for m, h in sorted(by_model(self.histograms()).items())},
        }
        try:
            write_json_atomic(self.path, document)
        except OSError:  # progress only: a full disk is said once, by the recorder
            pass
