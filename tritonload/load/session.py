"""Wire tritonload into a Locust process: one run directory per test, recorded and sampled.

A locustfile calls ``install(events)`` once. Then, in Locust's lifecycle:

* ``init``: parse the SLOs and tags, then `preflight` (the target, or the embedded server;
  each user class's settings; every payload validated against the served metadata). Bad
  input is one line and exit 2, before any load. The frozen `RunContext` is attached to the
  environment for the users.
* ``test_start``: open a new run directory; start the recorder, the server-stats sampler and
  the live ticker (progress, and stability windows when measuring in windows).
* ``test_stop`` (users already stopped): flush the records, write server stats, Locust's
  CSVs and the final run.json.
* ``quitting``: stop the runner first (so the last records land), judge the SLOs
  (`tritonload.load.gate`), then stop the embedded server.

Under Locust's master/worker mode (`tritonload.load.distributed`) the master owns the run
directory, the sampler and run.json, and takes in the workers' records; a worker only records
and forwards. The lifecycle listeners are registered before the pre-flight's first request,
since a worker can be told to spawn while that request is in flight.
"""

from __future__ import annotations

import csv
import logging
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gevent

from tritonload.core.config import parse_pairs
from tritonload.core.errors import TritonloadError, UsageError, print_error
from tritonload.core.rundir import (
    check_writable,
    new_run_id,
    unique_dir,
    write_arrivals,
    write_run_json,
)
from tritonload.core.slo import Slo, parse_slos
from tritonload.load import exact_stats
from tritonload.load.context import attach, expect
from tritonload.load.distributed import Collector, Worker, role
from tritonload.load.gate import SloGate
from tritonload.load.live import LiveTicker, StabilityWindows
from tritonload.load.options import add_options, option
from tritonload.load.preflight import Preflight, preflight, refresh
from tritonload.load.recorder import Recorder
from tritonload.load.runinfo import run_document
from tritonload.load.server_stats import ServerStatsSampler
from tritonload.load.stability import StabilityRule
from tritonload.load.webui import TritonTabs

log = logging.getLogger(__name__)


def install(events: Any) -> None:
    """Register tritonload with Locust's events (call once, from the locustfile)."""
    exact_stats.install()
    events.init_command_line_parser.add_listener(add_options)
    events.init.add_listener(_on_init)


def _on_init(environment: Any, **_: Any) -> None:
    try:
        options = environment.parsed_options
        tags = parse_pairs(option(options, "tag", []), "--tag", "KEY=VALUE")
        slos = parse_slos(option(options, "slo", []), option(options, "min_rps", None))
        session = LoadSession(environment, slos, tags)
        # Before any I/O: a worker's runner is already listening, and the master may tell it
        # to spawn while the pre-flight below waits on the server. Its test_start must find
        # the listeners, and its users must wait for the context.
        session.register()
        expect(environment)
        if session.role == "worker":  # the master validates, and sends the context
            return
        run_dir = option(options, "run_dir", None)
        check_writable(Path(run_dir).parent if run_dir else Path("runs"))
        session.checks = preflight(environment)
    except TritonloadError as exc:
        print_error(str(exc))
        sys.exit(exc.exit_code)
    attach(environment, session.checks.context)


def write_locust_csvs(environment: Any, run_dir: Path) -> None:
    """Locust's own stats, failures and exceptions CSVs, as ``--csv`` would write them."""
    from locust.stats import PERCENTILES_TO_REPORT, StatsCSV

    stats_csv = StatsCSV(environment, PERCENTILES_TO_REPORT)
    for name, write in (("stats", stats_csv.requests_csv), ("failures", stats_csv.failures_csv),
                        ("exceptions", stats_csv.exceptions_csv)):
        with open(run_dir / f"locust_{name}.csv", "w", newline="") as handle:
            write(csv.writer(handle))


@dataclass
class _Test:
    """One test (start to stop) of the Locust process, and what records it."""

    run_id: str
    scenario: str
    run_dir: Path
    started_ns: int
    recorder: Recorder
    sampler: ServerStatsSampler
    ticker: LiveTicker
    stability: StabilityRule | None


class LoadSession:
    """A Locust process's tritonload run lifecycle (options checked at construction)."""

    def __init__(self, environment: Any, slos: list[Slo], tags: dict[str, str]) -> None:
        self.environment = environment
        self.options = environment.parsed_options
        self.slos = slos
        self.tags = tags
        self.checks: Preflight | None = None
        self.test: _Test | None = None  # the test running now
        self.latest: _Test | None = None  # the test running now, or the last one
        self.write_failed = False
        self.role = "local"
        self.worker: Worker | None = None
        self.collector: Collector | None = None
        self.warmup_s = float(option(self.options, "warmup", 0.0))
        self.window_s = float(option(self.options, "window", 0.0))
        self.stats_interval_s = float(option(self.options, "stats_interval", 1.0))
        self.stability_rule = (int(option(self.options, "stable_windows", 3)),
                               float(option(self.options, "stability_tolerance", 0.1)),
                               int(option(self.options, "max_windows", 8)))
        if self.warmup_s < 0 or self.window_s < 0:
            raise UsageError("--warmup and --window must be >= 0 seconds")
        if self.stats_interval_s <= 0:
            raise UsageError("--stats-interval must be > 0")
        StabilityRule(*self.stability_rule)  # validates: one line on a bad value

    def register(self) -> None:
        """Hook the run's lifecycle into Locust's events (the context is attached later)."""
        environment, events = self.environment, self.environment.events
        self.role = role(environment)
        if self.role == "master":
            self.collector = Collector(
                environment, lambda: self.test.recorder if self.test is not None else None,
                lambda: self.checks.context.arrivals)
        elif self.role == "worker":
            self.worker = Worker(environment)
        if getattr(environment, "web_ui", None) is not None:
            TritonTabs(environment, self).register()
        # Registered first so it runs last: Locust fires `quitting` in reverse order.
        SloGate(self.slos, lambda: self.latest.run_dir if self.latest else None).register(
            environment)
        events.test_start.add_listener(self._on_test_start)
        events.test_stop.add_listener(self._on_test_stop)
        events.quitting.add_listener(self._on_quitting)
        # Ctrl-C as an event-loop callback, like Locust's own SIGTERM handling: a
        # KeyboardInterrupt raised inside whichever greenlet happens to run can be lost.
        gevent.signal_handler(signal.SIGINT, self._on_interrupt)

    def _on_interrupt(self) -> None:
        log.warning("interrupted: stopping the run")
        env = self.environment
        if getattr(env, "web_ui", None) is not None:
            env.web_ui.stop()
        if env.runner is not None:
            env.runner.quit()

    def _on_test_start(self, **_: Any) -> None:
        if self.worker is not None:  # records go to the master; it owns the run directory
            self.worker.start_test()
            return
        try:  # the web UI's form may have changed the settings since the last test
            attach(self.environment, refresh(self.checks, self.environment))
        except TritonloadError as exc:
            print_error(str(exc))
            gevent.spawn(self.environment.runner.stop)
            return
        scenario = Path(str(option(self.options, "locustfile", "locust"))).stem
        run_id = new_run_id()
        run_dir = unique_dir(option(self.options, "run_dir", None)
                             or Path("runs") / f"{run_id}-{scenario}")
        self.checks.context.arrivals.clear()
        recorder = Recorder(run_dir, on_write_error=self._on_write_error).register(
            self.environment)
        histograms = None
        if self.collector is not None:  # before Locust's spawn messages, on the same socket
            self.collector.start_test(self.checks.context,
                                      int(self.environment.runner.target_user_count or 0))
            histograms = self.collector.merged_histograms
        sampler = ServerStatsSampler(self.checks.admin, sorted(self.checks.context.payloads),
                                     run_dir, self.stats_interval_s,
                                     metrics_url=self.checks.metrics["url"],
                                     statistics=self.checks.extensions["statistics"],
                                     steps={m: c["ensemble_steps"]
                                            for m, c in self.checks.configs.items()
                                            if c.get("ensemble_steps")})
        stability = StabilityRule(*self.stability_rule) if self.window_s > 0 else None
        started_ns = time.time_ns()
        windows = StabilityWindows(stability, self.warmup_s, self.window_s) if stability else None
        ticker = LiveTicker(recorder, run_dir, started_ns, windows, self.environment.runner.quit,
                            histograms=histograms)
        self.test = _Test(run_id, scenario, run_dir, started_ns, recorder, sampler, ticker,
                          stability)
        self.latest = self.test
        self._write_run_json(self.test, ended_ns=None)
        sampler.start()
        ticker.start()

    def _on_test_stop(self, **_: Any) -> None:
        if self.worker is not None:  # send what is left, before "client_stopped"
            self.worker.stop_test()
            return
        if self.collector is not None and self.test is not None:
            self.collector.finish(self.environment.stats)
        test, self.test = self.test, None
        if test is None:
            return
        test.ticker.stop()
        self.environment.events.request.remove_listener(test.recorder.on_request)
        test.recorder.flush()
        arrivals = self.checks.context.arrivals
        try:
            test.sampler.stop()
            write_locust_csvs(self.environment, test.run_dir)
            if arrivals.counts:
                write_arrivals(test.run_dir, arrivals.rows())
            self._write_run_json(test, ended_ns=time.time_ns())
        except OSError as exc:  # a full disk: what was written before stays readable
            self._on_write_error(exc)
        if test.recorder.unwritten:
            log.warning("%d request records could not be written", test.recorder.unwritten)
        log.warning("run directory: %s (%d requests)", test.run_dir, test.recorder.count)

    def _on_write_error(self, exc: OSError) -> None:
        """The run directory cannot be written (a full disk): say so once, stop the run."""
        if self.write_failed:
            return
        self.write_failed = True
        where = self.latest.run_dir if self.latest is not None else "the run directory"
        print_error(f"cannot write {where}: {exc.strerror or exc}; the run stops, and what "
                    "was written stays readable")
        self.environment.process_exit_code = 2
        if self.test is not None:  # mid-run; at the end, the run is stopping already
            gevent.spawn(self.environment.runner.quit)

    def _on_quitting(self, **_: Any) -> None:
        runner = self.environment.runner
        if runner is not None and self.test is not None:
            runner.stop()  # stops users, fires test_stop: the last records are written
        self._on_test_stop()
        if self.checks is not None:
            self.checks.close()

    def _write_run_json(self, test: _Test, ended_ns: int | None) -> None:
        runner = self.environment.runner
        users = int(getattr(runner, "target_user_count", 0)
                    or option(self.options, "num_users", 0) or 0)
        write_run_json(test.run_dir, run_document(
            run_id=test.run_id, scenario=test.scenario, context=self.checks.context,
            users=users, configs=self.checks.configs, warmup_s=self.warmup_s,
            started_ns=test.started_ns, ended_ns=ended_ns, recorder=test.recorder,
            arrivals=self.checks.context.arrivals, stability=test.stability,
            stats_interval_s=self.stats_interval_s, tags=self.tags, slos=self.slos,
            client_cpu=test.ticker.cpu,
            workers=self.collector.document() if self.collector is not None else None,
            outages=test.ticker.outages.document(ended_ns), server_metrics=self.checks.metrics,
            shared_memory=self.checks.shared_memory(), generation=self.checks.generation,
            extensions=self.checks.extensions.record(),
            class_users=dict(getattr(runner, "target_user_classes_count", None) or {})))
