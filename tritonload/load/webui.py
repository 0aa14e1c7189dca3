"""The "Triton" tabs of Locust's web UI, through the modern UI's own extension points.

Locust 2.47's UI renders extra tabs as tables: ``extended_tabs`` and ``extended_tables`` in
the web UI's ``template_args`` name them and their columns, and an ``extended_stats`` list
added to the ``/stats/requests`` JSON (which the page polls every 2 s) fills them. Cells are
text, so two tabs:

* **Triton**: a row per model and protocol. Exact P50/P95/P99 from tritonload's HDR histograms
  (on a Locust master, the merge of the workers'), req/s and errors by kind from Locust's
  statistics, and Triton's own view of the model's last statistics interval (mean queue and
  compute times per request, mean batch size, the batch sizes executed; "not served by this
  server" from a KServe v2 server without the statistics extension). Then the row's
  settings: mode, requests in flight per user, and the mix as configured and as achieved.
* **Triton run**: the run directory, the open loop's scheduled, late and dropped sends, the
  extensions the server does not serve, and where the report is.

Links go where the UI renders links, the "Download Data" tab (``extended_csv_files``):
``/triton/report`` renders the analysis report of the last finished run (in a child process,
so the event loop that drives the load never waits on pandas) and serves it.

The rows are built by pure functions (`model_rows`, `run_rows`) from plain inputs, so they
are tested without a browser; the browser test checks the whole path.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

from tritonload.core.schema import PHASES
from tritonload.load.recorder import histogram_percentile_ms
from tritonload.triton.served import EXTENSIONS

log = logging.getLogger(__name__)

TAB = "triton"
RUN_TAB = "triton-run"
REPORT_PATH = "/triton/report"
#: How long rendering a report may take before the page says it failed.
REPORT_TIMEOUT_S = 180.0

MODEL_COLUMNS = [
    ("model", "Model"), ("protocol", "Protocol"), ("rps", "req/s"),
    ("p50_ms", "P50 (ms)"), ("p95_ms", "P95 (ms)"), ("p99_ms", "P99 (ms)"),
    ("requests", "Requests"), ("errors", "Errors by kind"),
    ("queue_ms", "Queue (ms)"), ("compute_input_ms", "Compute in (ms)"),
    ("compute_infer_ms", "Compute infer (ms)"), ("compute_output_ms", "Compute out (ms)"),
    ("mean_batch", "Mean batch"), ("batches", "Batch sizes (last interval)"),
    ("mode", "Mode"), ("in_flight", "In flight/user"), ("mix", "Mix: configured → achieved"),
]
RUN_COLUMNS = [("item", "Item"), ("value", "Value")]
#: The server cells of a target that does not serve statistics.
NOT_SERVED = "not served by this server"

_KIND = re.compile(r"""RequestFailed\(['"]([\w-]+):""")


def error_kind(error: str) -> str:
    """The kind of a Locust error string (``RequestFailed('timeout: ...')`` → ``timeout``)."""
    match = _KIND.search(error)
    return match.group(1) if match else "other"


def _ms(value: float | None) -> float | str:
    return "" if value is None else round(value, 3)


def server_columns(interval: Mapping[str, Any] | None, served: bool = True) -> dict[str, Any]:
    """Triton's last statistics interval for one model → the server columns of its rows.

    ``served``: False when the server does not serve statistics: every cell says so.
    """
    if not interval:
        cell = "" if served else NOT_SERVED
        return {f"{phase}_ms": cell for phase in PHASES} | {"mean_batch": cell, "batches": cell}
    counters, batches = interval["counters"], interval["batches"]
    row = {}
    for phase in PHASES:
        count = counters.get(f"{phase}_count", 0)
        row[f"{phase}_ms"] = round(counters[f"{phase}_ns"] / count / 1e6, 3) if count else ""
    executions = counters.get("execution_count", 0)
    row["mean_batch"] = (round(counters.get("inference_count", 0) / executions, 2)
                         if executions else "")
    row["batches"] = ", ".join(f"{size}×{n}" for size, (n, _) in sorted(batches.items()))
    return row


def model_rows(entries: Mapping[tuple[str, str], Any],
               histograms: Mapping[tuple[str, str], HdrHistogram],
               errors: Mapping[tuple[str, str], Mapping[str, int]],
               intervals: Mapping[str, Mapping[str, Any]],
               settings: Mapping[str, Mapping[str, Any]],
               statistics: bool = True) -> list[dict[str, Any]]:
    """One row per (model, protocol) seen.

    ``entries``: Locust's stats entries by (model, protocol) (``current_rps``,
    ``num_requests``); ``errors``: failures by kind; ``intervals``: Triton's last interval per
    model (`ServerStatsSampler.latest`); ``settings``: per protocol, ``mode``, ``in_flight``
    and the configured ``shares`` of each model; ``statistics``: whether the server serves
    statistics at all.
    """
    totals: dict[str, int] = {}
    for (_, protocol), entry in entries.items():
        totals[protocol] = totals.get(protocol, 0) + entry.num_requests
    rows = []
    for key in sorted(set(entries) | set(histograms)):
        model, protocol = key
        entry, histogram = entries.get(key), histograms.get(key)
        setting = settings.get(protocol, {})
        requests = entry.num_requests if entry is not None else 0
        configured = setting.get("shares", {}).get(model)
        achieved = requests / totals[protocol] if totals.get(protocol) else None
        mix = " → ".join(f"{share:.0%}" if share is not None else "-"
                         for share in (configured, achieved))
        rows.append({
            "model": model, "protocol": protocol,
            "rps": round(entry.current_rps, 1) if entry is not None else "",
            **{f"p{q}_ms": _ms(histogram_percentile_ms(histogram, q)) for q in (50, 95, 99)},
            "requests": requests,
            "errors": ", ".join(f"{kind} {n}" for kind, n in sorted(errors.get(key, {}).items()))
            or "0",
            **server_columns(intervals.get(model), statistics),
            "mode": setting.get("mode", ""), "in_flight": setting.get("in_flight", ""),
            "mix": mix,
        })
    return rows


def run_rows(run_dir: Path | None, running: bool, arrivals: Mapping[str, int] | None,
             open_loop: str | None, workers: int,
             unserved: list[str] = ()) -> list[dict[str, Any]]:
    """The run-level facts, as item/value rows (``unserved``: extensions not served)."""
    rows = [{"item": "run directory", "value": str(run_dir) if run_dir else "(no run yet)"}]
    rows += [{"item": f"{EXTENSIONS[name][0]} extension",
              "value": f"{NOT_SERVED}: {EXTENSIONS[name][1]}"} for name in unserved]
    if workers:
        rows.append({"item": "workers", "value": workers})
    if open_loop:
        rows.append({"item": "open loop", "value": open_loop})
    if arrivals:
        scheduled = max(arrivals["scheduled"], 1)
        rows.append({"item": "open-loop sends",
                     "value": f"{arrivals['scheduled']} scheduled, {arrivals['late']} late "
                              f"({arrivals['late'] / scheduled:.1%}), {arrivals['dropped']} "
                              f"dropped ({arrivals['dropped'] / scheduled:.1%})"})
    report = ("the run is still going: the report renders when it stops" if running
              else f"{REPORT_PATH} (linked in Download Data)" if run_dir else "")
    rows.append({"item": "report", "value": report})
    return rows


class TritonTabs:
    """Registers the tabs, their data and the report route on a Locust web UI."""

    def __init__(self, environment: Any, session: Any) -> None:
        self.environment = environment
        self.session = session  # `tritonload.load.session.LoadSession`: its current test

    def register(self) -> None:
        """Hook into the web UI (call at ``init``, where it exists)."""
        from flask import request

        web_ui = self.environment.web_ui
        web_ui.template_args.update({
            "extended_tabs": [{"title": "Triton", "key": TAB},
                              {"title": "Triton run", "key": RUN_TAB}],
            "extended_tables": [
                {"key": TAB, "structure": [{"key": k, "title": t} for k, t in MODEL_COLUMNS]},
                {"key": RUN_TAB, "structure": [{"key": k, "title": t} for k, t in RUN_COLUMNS]},
            ],
            "extended_csv_files": [{"href": REPORT_PATH,
                                    "title": "tritonload report of the last finished run"}],
        })

        @web_ui.app.after_request
        def add_triton_stats(response: Any) -> Any:
            if request.path != "/stats/requests" or response.status_code != 200:
                return response
            try:
                extended = self.extended_stats()
            except Exception:  # a broken tab must not break Locust's own page
                log.exception("the Triton tab's numbers failed")
                return response
            response.set_data(json.dumps({**response.json, "extended_stats": extended}))
            return response

        web_ui.app.add_url_rule(REPORT_PATH, "tritonload_report", self.report)

    def extended_stats(self) -> list[dict[str, Any]]:
        """``extended_stats`` for ``/stats/requests``."""
        session, runner = self.session, self.environment.runner
        view = session.latest
        entries = {(e.name, e.method): e for e in runner.stats.entries.values()}
        errors: dict[tuple[str, str], dict[str, int]] = {}
        for e in runner.errors.values():
            kinds = errors.setdefault((e.name, e.method), {})
            kind = error_kind(e.error)
            kinds[kind] = kinds.get(kind, 0) + e.occurrences
        context = session.checks.context if session.checks is not None else None
        settings: dict[str, dict[str, Any]] = {}
        open_loop = None
        if context is not None:
            for cls, s in context.settings.items():
                settings.setdefault(cls.protocol, {"mode": s.mode, "in_flight": s.max_in_flight,
                                                   "shares": s.mix.shares()})
                if s.rate:
                    open_loop = f"{s.rate:g} req/s in total, {s.arrival} arrivals"
        extensions = session.checks.extensions if session.checks is not None else None
        rows = model_rows(entries, view.ticker.histograms() if view else {}, errors,
                          view.sampler.latest() if view else {}, settings,
                          extensions is None or extensions["statistics"])
        arrivals = context.arrivals.totals() if context is not None and context.arrivals.counts \
            else None
        collector = session.collector
        run = run_rows(view.run_dir if view else None, session.test is not None, arrivals,
                       open_loop, len(collector.workers) if collector is not None else 0,
                       extensions.missing() if extensions else [])
        return [{"key": TAB, "data": rows}, {"key": RUN_TAB, "data": run}]

    def report(self) -> Any:
        """Render (once) and serve the analysis report of the last finished run."""
        from flask import make_response, send_from_directory
        from gevent import subprocess

        view = self.session.latest
        if view is None:
            return make_response("no run yet: start one from the New test form", 404)
        if self.session.test is not None:
            return make_response("the run is still going: its report renders once it stops",
                                 409)
        out = (view.run_dir / "report").resolve()  # Flask resolves a relative path elsewhere
        if not (out / "report.html").exists():
            command = [sys.executable, "-m", "tritonload.cli", "report", str(view.run_dir),
                       "-o", str(out)]
            try:
                done = subprocess.run(command, capture_output=True, text=True,
                                      timeout=REPORT_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                return make_response(f"the report took over {REPORT_TIMEOUT_S:g} s", 500)
            if done.returncode != 0:
                lines = (done.stderr or done.stdout).strip().splitlines()
                return make_response(f"the report failed: {lines[-1] if lines else ''}", 500)
        return send_from_directory(out, "report.html")
