"""`tritonload serve`: run the embedded Triton server with the demo fleet until stopped."""

from __future__ import annotations

import argparse
import time

from tritonload.cli.console import console, print_table
from tritonload.cli.signals import sigterm_raises_interrupt
from tritonload.core.config import parse_pairs
from tritonload.core.errors import ServerError, UsageError
from tritonload.server import AuthRestriction, EmbeddedTriton, GrpcTls, Ports, demo_fleet
from tritonload.server.fleet import (
    OVERRIDABLE,
    fleet_table,
    overrides_from_strings,
    with_steps,
)

LOOPBACK = ("127.", "localhost", "::1")
#: tritonserver's --metrics-config settings (those of the Triton nvidia-pytriton 0.7 ships).
METRICS_SETTINGS = ("counter_latencies", "summary_latencies", "summary_quantiles",
                    "summary_max_age", "summary_age_buckets", "histogram_latencies")


def add_server_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by every command that starts the embedded server."""
    group = parser.add_argument_group("embedded server")
    group.add_argument("--http-port", type=int, default=8000, help="HTTP/REST port (default 8000)")
    group.add_argument("--grpc-port", type=int, default=8001, help="gRPC port (default 8001)")
    group.add_argument("--metrics-port", type=int, default=8002,
                       help="Prometheus metrics port (default 8002)")
    group.add_argument("--metrics-config", action="append", default=[],
                       metavar="SETTING=VALUE",
                       help="tritonserver --metrics-config, repeatable; e.g. "
                       "summary_latencies=true adds per-model latency quantiles to the "
                       "metrics (read into server_metrics.parquet). Settings: "
                       + ", ".join(METRICS_SETTINGS))
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
        fleet = with_steps([m for m in fleet if m.name in wanted], fleet)
    return EmbeddedTriton(
        metrics_config=_metrics_config(args),
        auth=_auth(args),
        grpc_tls=_grpc_tls(args),
        models=fleet,
        ports=Ports(args.http_port, args.grpc_port, args.metrics_port),
        host=args.bind,
        ready_timeout_s=args.ready_timeout,
        log_file=args.server_log,
    )


def _metrics_config(args: argparse.Namespace) -> tuple[str, ...]:
    """``--metrics-config`` items, checked: a known setting and a value."""
    items = parse_pairs(getattr(args, "metrics_config", []), "--metrics-config", "SETTING=VALUE")
    for name in items:
        if name not in METRICS_SETTINGS:
            raise UsageError(f"--metrics-config {name}: unknown setting; known: "
                             f"{', '.join(METRICS_SETTINGS)}")
    return tuple(f"{name}={value}" for name, value in items.items())


def _auth(args: argparse.Namespace) -> AuthRestriction | None:
    """`serve --auth-header`: Triton's own restricted APIs (other commands have no such flag)."""
    pairs = parse_pairs([args.auth_header] if getattr(args, "auth_header", None) else [],
                        "--auth-header")
    if not pairs:
        if getattr(args, "auth_metadata", False):
            raise UsageError("--auth-metadata needs --auth-header NAME=VALUE")
        return None
    (name, value), = pairs.items()
    if not name.replace("-", "").replace("_", "").isalnum() or "," in value or ":" in value:
        raise UsageError(f"bad --auth-header {name}={value}: the name is letters, digits, '-' "
                         "and '_'; the value has no ',' or ':' (Triton's rule syntax)")
    apis = ("inference", "metadata", "model-config") if args.auth_metadata else ("inference",)
    return AuthRestriction(name.lower(), value, apis)


def _grpc_tls(args: argparse.Namespace) -> GrpcTls | None:
    """`serve --grpc-tls-*`: TLS (or mutual TLS) on Triton's gRPC endpoint."""
    cert, key = getattr(args, "grpc_tls_cert", None), getattr(args, "grpc_tls_key", None)
    ca, mutual = getattr(args, "grpc_tls_ca", None), getattr(args, "grpc_tls_mutual", False)
    if cert is None and key is None:
        if ca is not None or mutual:
            raise UsageError("--grpc-tls-ca and --grpc-tls-mutual need --grpc-tls-cert and "
                             "--grpc-tls-key")
        return None
    if cert is None or key is None:
        raise UsageError("--grpc-tls-cert and --grpc-tls-key go together")
    if mutual and ca is None:
        raise UsageError("--grpc-tls-mutual needs --grpc-tls-ca: the CA that signs the "
                         "client certificates")
    return GrpcTls(cert, key, ca, mutual)


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
    auth = parser.add_argument_group("authentication (Triton's restricted APIs)")
    auth.add_argument(
        "--auth-header", default=None, metavar="NAME=VALUE",
        help="answer inference requests only when they carry this header (HTTP: NAME; gRPC: "
        "triton-grpc-protocol-NAME, as Triton expects). Clients send it with --header; a "
        "missing or wrong one is HTTP 403 / gRPC UNAVAILABLE, recorded as error kind 'auth'")
    auth.add_argument("--auth-metadata", action="store_true",
                      help="restrict the model metadata and config endpoints too")
    tls = parser.add_argument_group(
        "TLS on gRPC (Triton's HTTP endpoint has no TLS: put a TLS proxy in front of it)")
    tls.add_argument("--grpc-tls-cert", default=None, metavar="FILE",
                     help="serve gRPC over TLS with this PEM server certificate; clients then "
                     "use grpcs://HOST:PORT, with --tls-ca naming the CA that signed it")
    tls.add_argument("--grpc-tls-key", default=None, metavar="FILE",
                     help="PEM private key of --grpc-tls-cert")
    tls.add_argument("--grpc-tls-ca", default=None, metavar="FILE",
                     help="PEM CA that signs the client certificates (with --grpc-tls-mutual)")
    tls.add_argument("--grpc-tls-mutual", action="store_true",
                     help="mutual TLS: refuse clients without a certificate signed by "
                     "--grpc-tls-ca (clients give theirs with --tls-client-cert and "
                     "--tls-client-key)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted."""
    server = server_from_args(args)
    with sigterm_raises_interrupt():
        try:
            with console.status("starting tritonserver and loading models…"):
                server.start()
            grpc = f"grpcs://{server.grpc_url}" if server.grpc_tls else server.grpc_url
            console.print(f"Triton ready  HTTP {server.http_url}  gRPC {grpc}  "
                          f"metrics {server.metrics_url}")
            if server.grpc_tls and server.grpc_tls.mutual:
                console.print("gRPC: mutual TLS; clients need --tls-client-cert and "
                              "--tls-client-key")
            if server.auth:
                console.print(f"restricted: {', '.join(server.auth.apis)}; send --header "
                              f"{server.auth.name}=… (HTTP) and --header "
                              f"{server.auth.grpc_name}=… (gRPC)")
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
