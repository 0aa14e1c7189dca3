"""Wire tritonload into a Locust process: options, target, payloads, recording, run directory.

A locustfile calls ``install(events)`` once. Then, in Locust's lifecycle:

* ``init``: resolve the target (``--host``, or start the embedded server), resolve each user
  class's settings, validate every payload against the served metadata (one line and exit 2
  on a mismatch, an unknown model or an unreachable server), and register the `Recorder`.
* ``test_start``: open a new run directory, start the server-stats sampler.
* ``test_stop`` (users already stopped): flush records, write server stats and run.json.
* ``quitting``: stop the runner first (so the last records land), then the embedded server.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

import gevent
import numpy as np
import pandas as pd

from tritonload.core.config import Target, parse_pairs
from tritonload.core.errors import TritonloadError, UsageError, print_error
from tritonload.core.mix import ModelMix
from tritonload.core.options import add_slo_options, add_user_options
from tritonload.core.rundir import (
    iso,
    new_run_id,
    tool_versions,
    unique_dir,
    write_arrivals,
    write_json_atomic,
    write_run_json,
)
from tritonload.core.slo import SloGate, parse_slos
from tritonload.load.arrivals import ArrivalLedger
from tritonload.load.context import RunContext, UserSettings, attach
from tritonload.load.recorder import Recorder
from tritonload.load.server_stats import ServerStatsSampler
from tritonload.load.stability import StabilityRule
from tritonload.load.users import TritonUser
from tritonload.server import EmbeddedTriton, Ports
from tritonload.server.fleet import DEMO_SHAPES
from tritonload.triton.admin import TritonAdmin, config_snapshot
from tritonload.triton.payloads import (
    ModelInfo,
    Payload,
    generate_payload,
    load_payload_file,
    parse_shape_override,
)

log = logging.getLogger(__name__)


def add_options(parser: Any) -> None:
    """Tritonload's Locust command-line options."""
    group = parser.add_argument_group("tritonload")
    add_user_options(group)
    group.add_argument("--request-timeout", type=float, default=None, metavar="SECONDS",
                       help="per-request timeout (default 30)")
    group.add_argument("--header", action="append", default=[], metavar="NAME=VALUE",
                       help="extra request header (auth tokens...); repeatable")
    group.add_argument("--fill", choices=("random", "zeros"), default="random",
                       help="generated payload values (default random)")
    group.add_argument("--run-dir", default=None,
                       help="run directory (default runs/<run id>-<scenario>)")
    group.add_argument("--stats-interval", type=float, default=1.0, metavar="SECONDS",
                       help="server statistics sampling period (default 1)")
    group.add_argument("--seed", type=int, default=0, help="seed for the mix draw and payloads")
    add_slo_options(group)
    group.add_argument("--warmup", type=float, default=0.0, metavar="SECONDS",
                       help="seconds the analysis drops at the start (and excluded from "
                       "stability windows)")
    group.add_argument("--window", type=float, default=0.0, metavar="SECONDS",
                       help="measure in windows of this length and stop once stable "
                       "(perf_analyzer's rule); 0 = off, run for -t")
    group.add_argument("--stable-windows", type=int, default=3,
                       help="windows that must agree (default 3)")
    group.add_argument("--max-windows", type=int, default=8,
                       help="give up, marked unstable, after this many windows (default 8)")
    group.add_argument("--stability-tolerance", type=float, default=0.10,
                       help="allowed spread of throughput and P95 around their mean (default 0.1)")
    group.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE",
                       help="free-form metadata stored under run.json's extra; repeatable")
    group.add_argument("--embedded-port", type=int, default=8000, metavar="PORT",
                       help="without --host: HTTP port of the embedded server "
                       "(gRPC and metrics use the next two; default 8000)")


def install(events: Any) -> None:
    """Register tritonload with Locust's events (call once, from the locustfile)."""
    events.init_command_line_parser.add_listener(add_options)
    events.init.add_listener(_on_init)


def _on_init(environment: Any, **_: Any) -> None:
    session = LoadSession(environment)
    try:
        session.prepare()
    except TritonloadError as exc:
        session.stop_server()
        print_error(str(exc))
        sys.exit(exc.exit_code)
    session.register()


def _option(options: Any, name: str, default: Any = None) -> Any:
    value = getattr(options, name, None) if options is not None else None
    return default if value is None else value


def _p95_ms(latencies_us: list[float]) -> float | None:
    return round(float(np.percentile(latencies_us, 95)) / 1000, 3) if latencies_us else None


def write_locust_csvs(environment: Any, run_dir: Path) -> None:
    """Locust's own stats, failures and exceptions CSVs, as ``--csv`` would write them."""
    from locust.stats import PERCENTILES_TO_REPORT, StatsCSV

    stats_csv = StatsCSV(environment, PERCENTILES_TO_REPORT)
    for name, write in (("stats", stats_csv.requests_csv), ("failures", stats_csv.failures_csv),
                        ("exceptions", stats_csv.exceptions_csv)):
        with open(run_dir / f"locust_{name}.csv", "w", newline="") as handle:
            write(csv.writer(handle))


class LoadSession:
    """Everything a Locust process shares across its tritonload users."""

    def __init__(self, environment: Any) -> None:
        self.environment = environment
        self.options = environment.parsed_options
        self.seed = int(_option(self.options, "seed", 0))
        self.server: EmbeddedTriton | None = None
        self.target: Target | None = None
        self.payloads: dict[str, Payload] = {}
        self.configs: dict[str, dict] = {}
        self.recorder: Recorder | None = None
        self.sampler: ServerStatsSampler | None = None
        self.run_dir: Path | None = None
        self._settings: dict[type, UserSettings] = {}
        self._started_ns = 0
        self._admin: TritonAdmin | None = None
        self.slos: list = []
        self.tags: dict[str, str] = {}
        self.arrivals = ArrivalLedger()

    # -- init ----------------------------------------------------------------------------

    def prepare(self) -> None:
        """Target, user settings, validated payloads. Raises TritonloadError on bad input."""
        self.tags = parse_pairs(_option(self.options, "tag", []), "--tag", "KEY=VALUE")
        self.slos = parse_slos(_option(self.options, "slo", []),
                               _option(self.options, "min_rps", None))
        self.target = self._resolve_target()
        self._keep_usable_user_classes()
        for cls in self._user_classes():
            self._settings[cls] = self._resolve_settings(cls)
        models = sorted({m for s in self._settings.values() for m in s.mix.models})
        self._admin = TritonAdmin(self.target)
        self._admin.server_live()
        payload_files = parse_pairs(_option(self.options, "payload", []), "--payload",
                                    "MODEL=FILE")
        shapes = {m: dict(s) for m, s in DEMO_SHAPES.items()}
        for item in _option(self.options, "shape", []):
            model, name, dims = parse_shape_override(item)
            shapes.setdefault(model, {})[name] = dims
        for model in models:
            config = self._admin.config(model)
            info = ModelInfo.from_served(self._admin.metadata(model), config)
            self.configs[model] = config_snapshot(config)
            if model in payload_files:
                self.payloads[model] = load_payload_file(payload_files[model], info)
            else:
                self.payloads[model] = generate_payload(
                    info, shapes.get(model), fill=_option(self.options, "fill", "random"),
                    seed=self.seed)
        unknown = set(payload_files) - set(models)
        if unknown:
            raise UsageError(f"--payload names model {sorted(unknown)[0]!r}, which is not in "
                             f"the mix ({', '.join(models)})")
        log.info("payloads validated for %s", ", ".join(models))
        attach(self.environment, RunContext(self.target, dict(self.payloads),
                                            dict(self._settings), self.seed, self.arrivals))

    def _resolve_target(self) -> Target:
        headers = parse_pairs(_option(self.options, "header", []), "--header", "NAME=VALUE")
        timeout = float(_option(self.options, "request_timeout", 30.0))
        host = self.environment.host or _option(self.options, "host", None)
        if host:
            return Target.parse(host, headers=headers, timeout_s=timeout)
        from locust.runners import WorkerRunner

        if isinstance(self.environment.runner, WorkerRunner):
            raise UsageError("workers need --host: the embedded server runs on one machine only")
        base = int(_option(self.options, "embedded_port", 8000))
        self.server = EmbeddedTriton(ports=Ports(base, base + 1, base + 2))
        log.warning("no --host: starting the embedded Triton server on 127.0.0.1:%d", base)
        self.server.start()
        return Target(host=self.server.host, http_port=base, grpc_port=base + 1, embedded=True,
                      headers=headers, timeout_s=timeout)

    def _user_classes(self) -> list[type]:
        return [c for c in self.environment.user_classes if issubclass(c, TritonUser)]

    def _keep_usable_user_classes(self) -> None:
        """A URL that pins one protocol drops the other protocol's user classes."""
        usable = [c for c in self._user_classes() if self.target.supports(c.protocol)]
        dropped = set(self._user_classes()) - set(usable)
        if not usable:
            raise UsageError(f"no user class in this locustfile can use {self.target.describe()}")
        if dropped:
            log.warning("target %s: skipping %s", self.target.describe(),
                        ", ".join(sorted(c.__name__ for c in dropped)))
            env = self.environment
            env.user_classes = [c for c in env.user_classes if c not in dropped]

    def _resolve_settings(self, cls: type) -> UserSettings:
        """Class attributes, overridden by the options given (a given 0 is kept, and refused)."""
        mix_spec = _option(self.options, "mix", None) or cls.mix
        mode = _option(self.options, "mode", cls.mode)
        in_flight = int(_option(self.options, "max_in_flight", cls.max_in_flight))
        rate = _option(self.options, "rate", cls.rate)
        arrival = _option(self.options, "arrival", cls.arrival)
        settings = UserSettings(ModelMix.of(mix_spec), mode, in_flight, rate, arrival)
        if mode == "sync":
            return dataclasses.replace(settings, max_in_flight=1, rate=None)
        return settings if mode == "open" else dataclasses.replace(settings, rate=None)

    # -- lifecycle -----------------------------------------------------------------------

    def register(self) -> None:
        """Hook the run's lifecycle into the environment's events."""
        events = self.environment.events
        # Registered first so it runs last: Locust fires `quitting` in reverse order.
        SloGate(self.slos, self._final_records).register(self.environment)
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
        scenario = Path(str(_option(self.options, "locustfile", "locust"))).stem
        run_id = new_run_id()
        self.run_dir = unique_dir(_option(self.options, "run_dir", None)
                                  or Path("runs") / f"{run_id}-{scenario}")
        self._run_id, self._scenario = run_id, scenario
        self.arrivals.clear()
        self.recorder = Recorder(self.run_dir).register(self.environment)
        self.sampler = ServerStatsSampler(self._admin, sorted(self.payloads), self.run_dir,
                                          float(_option(self.options, "stats_interval", 1.0)))
        self._started_ns = time.time_ns()
        self._write_run_json(final=False)
        self.sampler.start()
        self.stability = None
        if float(_option(self.options, "window", 0.0)) > 0:
            self.stability = StabilityRule(int(_option(self.options, "stable_windows", 3)),
                                           float(_option(self.options, "stability_tolerance", 0.1)),
                                           int(_option(self.options, "max_windows", 8)))
        self._live = gevent.spawn(self._tick)

    def _on_test_stop(self, **_: Any) -> None:
        if self.recorder is None:
            return
        self._live.kill()
        self.environment.events.request.remove_listener(self.recorder.on_request)
        self.recorder.flush()
        self.sampler.stop()
        write_locust_csvs(self.environment, self.run_dir)
        if self.arrivals.counts:
            write_arrivals(self.run_dir, self.arrivals.rows())
        self._write_run_json(final=True)
        log.warning("run directory: %s (%d requests)", self.run_dir, self.recorder.count)
        self.recorder = None

    def _on_quitting(self, **_: Any) -> None:
        runner = self.environment.runner
        if runner is not None and self.recorder is not None:
            runner.stop()  # stops users, fires test_stop: the last records are written
        self._on_test_stop()
        self.stop_server()

    def _tick(self, period_s: float = 1.0) -> None:
        """Every second: write ``live.json`` and, when measuring in windows, judge stability."""
        warmup_s = float(_option(self.options, "warmup", 0.0))
        window_s = float(_option(self.options, "window", 0.0))
        window: list[float] = []
        window_start = None
        last = time.monotonic()
        while True:
            gevent.sleep(period_s)
            latencies, errors = self.recorder.take_live_window()
            now = time.monotonic()
            elapsed = (time.time_ns() - self._started_ns) / 1e9
            write_json_atomic(self.run_dir / "live.json", {
                "elapsed_s": round(elapsed, 1),
                "requests": self.recorder.count,
                "rps": round((len(latencies) + errors) / (now - last), 1),
                "p95_ms": _p95_ms(latencies),
                "errors": sum(self.recorder.errors.values()),
                "windows": len(self.stability.history) if self.stability else None,
                # Since the start, per model, from the HDR histograms (µs, 3 digits).
                "p95_ms_by_model": {m: self.recorder.percentile_ms(m, 95)
                                    for m in sorted(self.recorder.histograms)},
            })
            last = now
            if self.stability is None or elapsed < warmup_s:
                continue
            if window_start is None:
                window_start = now
                continue  # the first second after warm-up may straddle it
            window += latencies
            if now - window_start >= window_s:
                self.stability.add(len(window) / (now - window_start), _p95_ms(window))
                window, window_start = [], now
                if self.stability.done:
                    gevent.spawn(self.environment.runner.quit)
                    return

    @staticmethod
    def _load(settings: list[UserSettings], users: int, in_flight: int) -> dict[str, Any]:
        rates = [s.rate for s in settings if s.rate]
        if rates:
            return {"kind": "rate", "level": max(rates)}
        return {"kind": "concurrency", "level": users * in_flight}

    def _final_records(self) -> pd.DataFrame | None:
        if self.run_dir is None or not any((self.run_dir / "requests").glob("*.parquet")):
            return None
        return pd.read_parquet(self.run_dir / "requests", columns=["latency_us", "ok", "start_ns"])

    def stop_server(self) -> None:
        """Stop the embedded server, if this session started one."""
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        if self.server is not None:
            self.server.stop()
            self.server = None

    def _write_run_json(self, final: bool) -> None:
        runner = self.environment.runner
        settings = list(self._settings.values())
        users = int(getattr(runner, "target_user_count", 0) or
                    _option(self.options, "num_users", 0) or 0)
        in_flight = max((s.max_in_flight for s in settings), default=1)
        modes = sorted({s.mode for s in settings})
        ended = time.time_ns() if final else None
        recorder = self.recorder
        write_run_json(self.run_dir, {
            "run_id": self._run_id,
            "tool_versions": tool_versions(),
            "scenario": self._scenario,
            "target": {"url": self.target.describe(), "embedded": self.target.embedded,
                       **{f"{p}_url": self.target.url(p) if self.target.supports(p) else None
                          for p in ("http", "grpc")}},
            "protocols": sorted({c.protocol for c in self._settings}),
            "mode": modes[0] if len(modes) == 1 else "mixed",
            "max_in_flight": in_flight,
            "load": self._load(settings, users, in_flight),
            "users": users,
            "user_classes": {c.__name__: {"protocol": c.protocol, "mix": s.mix.shares(),
                                          "mode": s.mode, "max_in_flight": s.max_in_flight}
                             for c, s in self._settings.items()},
            "mix": settings[0].mix.shares() if settings else {},
            "achieved_mix": recorder.achieved_mix() if recorder else {},
            "warmup_s": float(_option(self.options, "warmup", 0.0)),
            "stability": self.stability.summary() if getattr(self, "stability", None) else None,
            "started_ns": self._started_ns,
            "ended_ns": ended,
            "started_at": iso(self._started_ns),
            "ended_at": iso(ended) if ended else None,
            "request_count": recorder.count if recorder else 0,
            "error_counts": dict(recorder.errors) if recorder else {},
            "arrivals": self.arrivals.totals() if self.arrivals.counts else None,
            "models": self.configs,
            "payloads": {m: p.source for m, p in self.payloads.items()},
            "server_stats_interval_s": self.sampler.interval_s if self.sampler else None,
            "gevent_threadpool_size": gevent.get_hub().threadpool.maxsize,
            "extra": {"tags": self.tags,
                      "slos": [s.describe() for s in self.slos]},
        })
