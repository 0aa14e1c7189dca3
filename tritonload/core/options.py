"""Command-line options shared by Locust (via `session.install`) and `tritonload run`.

Only argparse here: the CLI must not import Locust, which monkey-patches the process.
"""

from __future__ import annotations

import argparse
from typing import Any


def add_user_options(group: Any) -> None:
    """What the users send: mix, mode, open-loop rate, payloads."""
    group.add_argument("--mix", default=None, metavar="MODEL:W,...",
                       help="weighted model mix, e.g. text_classifier:5,recommender:3")
    group.add_argument("--llm-mix", default=None, metavar="MODEL:W,...",
                       help="LLM users: their weighted model mix (default each user class's "
                       "own; --mix is the classic users')")
    group.add_argument("--mode", choices=("sync", "async", "open"), default=None,
                       help="sync: one request in flight per user; async: up to --max-in-flight; "
                       "open: requests on a schedule at --rate, latency from the scheduled time")
    group.add_argument("--max-in-flight", type=int, default=None,
                       help="requests in flight per user (async), or the cap per user (open)")
    group.add_argument("--rate", type=float, default=None,
                       help="open loop: total requests per second, split over the users")
    group.add_argument("--arrival", choices=("poisson", "constant", "replay"), default=None,
                       help="open loop: arrival process (default poisson); replay: send each "
                       "--payload entry at its \"timestamp\" (ms), the trace repeated until "
                       "the run ends, --rate and the mix's weights unused")
    group.add_argument("--payload", action="append", default=[], metavar="MODEL=FILE",
                       help="perf_analyzer --input-data JSON file or directory for a "
                            "model; repeatable")
    group.add_argument("--validate", action="store_true", default=None,
                       help="check every answer against the --payload file's validation_data "
                       "(exactly, as perf_analyzer does); a mismatch is a failed request of "
                       "kind output_mismatch")
    group.add_argument("--shape", action="append", default=[], metavar="MODEL.INPUT=DIMS",
                       help="dims of a variable input for generated payloads; repeatable")
    group.add_argument("--batch-dim", choices=("auto", "yes", "no"), default=None,
                       help="for a server that serves no model configuration (a non-Triton "
                       "KServe v2 server): whether inputs carry a batch dimension; default "
                       "auto, inferred from the metadata (every input's shape starts with -1)")
    group.add_argument("--shared-memory", choices=("none", "system", "cuda"), default=None,
                       help="system: inputs written once into shared-memory regions registered "
                       "with the server, and requests only name them (a server on this "
                       "machine: a loopback target); cuda: the same on a GPU; default none")
    group.add_argument("--output-shared-memory-size", type=positive_int, default=None,
                       metavar="BYTES", help="with --shared-memory: answers written to "
                       "shared memory, BYTES per output (at least the largest output)")
    add_generation_options(group)


def add_generation_options(group: Any) -> None:
    """The LLM users' models and prompts (`tritonload.load.llm`): lengths, pools, datasets."""
    group.add_argument("--isl", default=None, metavar="N|MEAN,STDDEV|@FILE",
                       help="LLM users: input sequence length in words, fixed, normal or from "
                       "a file of lengths (default 128)")
    group.add_argument("--osl", default=None, metavar="N|MEAN,STDDEV|@FILE",
                       help="LLM users: output tokens asked for (max_tokens), same forms "
                       "(default 64)")
    group.add_argument("--num-system-prompts", type=int, default=None, metavar="N",
                       help="LLM users: a pool of N shared system prompts, one prepended to "
                       "each prompt (default 0: none)")
    group.add_argument("--system-prompt-length", type=int, default=None, metavar="WORDS",
                       help="LLM users: words per system prompt (with --num-system-prompts)")
    group.add_argument("--prompts", default=None, metavar="FILE.jsonl",
                       help="LLM users: prompts from a JSONL file of {\"text\": …} or "
                       "{\"input_ids\": [...]} (and optionally \"max_tokens\") instead of "
                       "synthetic ones")
    group.add_argument("--token-ids", action="store_true", default=None,
                       help="LLM users: send each prompt as token ids (an integer input_ids "
                       "input, as an engine's raw backend takes it) instead of text_input; "
                       "synthetic ids, --isl of them")


def add_metrics_option(group: Any) -> None:
    """``--metrics-url``: Triton's Prometheus endpoint, scraped at each statistics sample."""
    group.add_argument("--metrics-url", default=None, metavar="URL",
                       help="Triton's metrics endpoint, read with the statistics (GPU and CPU "
                       "utilisation, memory, power, energy, pending requests); default: the "
                       "target's host on its HTTP port + 2 (Triton's 8002 beside 8000), "
                       "skipped with one line if it does not answer; 'off' to not read it")


def add_tls_options(group: Any) -> None:
    """``--tls-ca``, ``--tls-client-cert``, ``--tls-client-key``: the client side of grpcs:// or https://."""
    group.add_argument("--tls-ca", default=None, metavar="FILE",
                       help="PEM CA certificate(s) to trust for a grpcs:// or https:// target "
                       "(default: the system's); the server's hostname or IP is always checked "
                       "against its certificate")
    group.add_argument("--tls-client-cert", default=None, metavar="FILE",
                       help="PEM client certificate, for a server that asks for one (mutual "
                       "TLS: tritonserver --grpc-use-ssl-mutual); needs --tls-client-key")
    group.add_argument("--tls-client-key", default=None, metavar="FILE",
                       help="PEM private key of --tls-client-cert")


def tls_args(tls: Any) -> list[str]:
    """The ``--tls-*`` options that give a child process the same `TlsFiles` (none for None)."""
    if tls is None:
        return []
    pairs = (("--tls-ca", tls.ca), ("--tls-client-cert", tls.cert), ("--tls-client-key", tls.key))
    return [arg for flag, path in pairs if path is not None for arg in (flag, path)]


def add_slo_options(group: Any) -> None:
    """``--slo`` and ``--min-rps``: any breach makes the run exit with code 3."""
    group.add_argument("--slo", action="append", default=[], metavar="EXPR",
                       help="service-level objective, e.g. p95=50ms, p99=120ms, error_rate=0.5%%; "
                       "repeatable. Any breach makes the process exit with code 3")
    group.add_argument("--min-rps", type=float, default=None,
                       help="SLO: minimum successful requests per second")


def positive_number(text: str) -> float:
    """Argparse type: a number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def positive_int(text: str) -> int:
    """Argparse type: a whole number > 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value
