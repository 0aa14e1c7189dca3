"""`tritonload serve`: run the embedded Triton server with the demo fleet until stopped."""

from __future__ import annotations

import argparse
import time

from tritonload.cli.console import console, print_table
from tritonload.cli.signals import sigterm_raises_interrupt
from tritonload.core.errors import ServerError, UsageError
from tritonload.server import EmbeddedTriton, Ports, demo_fleet
from tritonload.server.fleet import OVERRIDABLE, fleet_table, overrides_from_strings

LOOPBACK = ("127.", "localhost", "::1")


def add_server_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by every command that starts the embedded server."""
    group = parser.add_argument_group("embedded server")
    group.add_argument("--http-port", type=int, default=8000, help="HTTP/REST port (default 8000)")
    group.add_argument("--grpc-port", type=int, default=8001, help="gRPC port (default 8001)")
    group.add_argument("--metrics-port", type=int, default=8002,
                       help="Prometheus metrics port (default 8002)")
    group.add_argument("--bind", default="127.0.0.1",
                       help="loopback address to listen on (default 127.0.0.1)")
    group.add_argument("--models", default=None, metavar="NAME[,NAME...]",
                       help="serve only these models (default: the whole demo fleet)")
    group.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="MODEL.FIELD=VALUE",
        help="override a model setting; repeatable. Fields: " + ", ".join(OVERRIDABLE)
        + ". Example: --set text_classifier.max_queue_delay_us=100 "
        "--set recommender.preferred_batch_sizes=8,16 --set image_classifier.instances=2",
    )
    group.add_argument("--ready-timeout", type=float, default=120.0, metavar="SECONDS",
                       help="give up if the models are not ready by then (default 120)")
    group.add_argument("--server-log", default=None, metavar="PATH",
                       help="write tritonserver's own log here (default: a temporary file)")


def server_from_args(args: argparse.Namespace) -> EmbeddedTriton:
    """Build (not start) the embedded server the options describe."""
    if not args.bind.startswith(LOOPBACK):
        raise UsageError(f"--bind {args.bind}: the embedded server listens on loopback only")
    for flag in ("http_port", "grpc_port", "metrics_port"):
        if not 0 < getattr(args, flag) < 65536:
            raise UsageError(f"--{flag.replace('_', '-')} must be 1..65535")
    fleet = demo_fleet(overrides_from_strings(args.overrides))
    if args.models:
        wanted = [m.strip() for m in args.models.split(",") if m.strip()]
        known = {m.name for m in fleet}
        unknown = [m for m in wanted if m not in known]
        if unknown:
            raise UsageError(f"unknown model {unknown[0]!r}; known: {', '.join(sorted(known))}")
        fleet = [m for m in fleet if m.name in wanted]
    return EmbeddedTriton(
        models=fleet,
        ports=Ports(args.http_port, args.grpc_port, args.metrics_port),
        host=args.bind,
        ready_timeout_s=args.ready_timeout,
        log_file=args.server_log,
    )


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `serve`."""
    parser = sub.add_parser(
        "serve",
        help="run the embedded Triton server with the demo models",
        description=(
            "Start a real Triton Inference Server (the tritonserver binary shipped by "
            "nvidia-pytriton) on loopback, serving the demo fleet: text_classifier, "
            "image_classifier, recommender, wide_ranker, narrow_ranker, each with a "
            "<name>_nobatch twin. Waits until every model is ready, prints the endpoints and "
            "the model table, and runs until Ctrl-C or SIGTERM."
        ),
    )
    add_server_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted."""
    server = server_from_args(args)
    with sigterm_raises_interrupt():
        try:
            with console.status("starting tritonserver and loading models…"):
                server.start()
            console.print(f"Triton ready  HTTP {server.http_url}  gRPC {server.grpc_url}  "
                          f"metrics {server.metrics_url}")
            print_table(fleet_table(server.models), title="models")
            console.print("Ctrl-C to stop.")
            while server.running():
                time.sleep(0.5)
            raise ServerError("tritonserver exited unexpectedly")
        except KeyboardInterrupt:
            console.print("stopping…")
        finally:
            server.stop()
    return 0
