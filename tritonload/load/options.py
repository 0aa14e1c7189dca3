"""tritonload's Locust command-line options, and reading them back from Locust's namespace."""

from __future__ import annotations

from typing import Any

from tritonload.core.options import (
    add_metrics_option,
    add_slo_options,
    add_tls_options,
    add_user_options,
)

#: The options the web UI's start form shows, editable per test: what the load is. The rest
#: (payload files, SLOs, run directory, stability rule...) stay command-line options.
WEB_FORM_OPTIONS = ("mix", "mode", "max_in_flight", "rate", "arrival")


def add_options(parser: Any) -> None:
    """Tritonload's Locust command-line options."""
    group = parser.add_argument_group("tritonload")
    first = len(parser._actions)
    add_user_options(group)
    group.add_argument("--request-timeout", type=float, default=None, metavar="SECONDS",
                       help="per-request timeout (default 30)")
    group.add_argument("--error-backoff", type=float, default=None, metavar="SECONDS",
                       help="after a failed request, the user waits this long before its "
                       "next one, doubling while failures go on (at most 5 s) and reset by "
                       "a success; spares a dead target the error storm (default 0: off)")
    group.add_argument("--header", action="append", default=[], metavar="NAME=VALUE",
                       help="extra request header (auth tokens...); repeatable")
    add_tls_options(group)
    group.add_argument("--fill", choices=("random", "zeros"), default="random",
                       help="generated payload values (default random)")
    group.add_argument("--run-dir", default=None,
                       help="run directory (default runs/<run id>-<scenario>)")
    group.add_argument("--stats-interval", type=float, default=1.0, metavar="SECONDS",
                       help="server statistics sampling period (default 1)")
    add_metrics_option(group)
    group.add_argument("--seed", type=int, default=0, help="seed for the mix draw and payloads")
    add_slo_options(group)
    group.add_argument("--warmup", type=float, default=0.0, metavar="SECONDS",
                       help="seconds dropped at the start by the SLO gate, the report and the "
                       "stability windows (default 0: the first 10%% of the run, at most 30 s)")
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
    group.add_argument("--embedded-target", action="store_true",
                       help="--host is an embedded server that tritonload's CLI started "
                       "(recorded in run.json; set by tritonload run, bench and sweep)")
    group.add_argument("--embedded-port", type=int, default=8000, metavar="PORT",
                       help="without --host: HTTP port of the embedded server "
                       "(gRPC and metrics use the next two; default 8000)")
    for action in parser._actions[first:]:  # Locust's own flag for its start form
        action.include_in_web_ui = action.dest in WEB_FORM_OPTIONS
        if action.dest in WEB_FORM_OPTIONS:
            # The form draws choices as a select that always sends its first one ("sync"),
            # which would override a user class's own mode: a text field, empty by default,
            # instead. The values are still checked (`UserSettings`), one line and exit 2.
            action.choices = None


def option(options: Any, name: str, default: Any = None) -> Any:
    """An option's value, or ``default`` when it was not given (a given 0 is kept).

    The web UI's start form sends an option left empty as ``""``: not given, too.
    """
    value = getattr(options, name, None) if options is not None else None
    return default if value is None or value == "" else value
