"""The run-directory contract in one place: format, file names, columns, dtypes, run.json keys.

docs/run-directory.md says what each one means. The writers (`tritonload.load`, through
`tritonload.core.rundir`), the reader (`tritonload.analysis.load`) and the synthetic-run
generator all take their names and types from here, so a change to the format is one change,
and a writer that drifts from it fails the analysis tests.
"""

from __future__ import annotations

import pyarrow as pa

FORMAT = "tritonload-run"
FORMAT_VERSION = 1

RUN_JSON = "run.json"
LIVE_JSON = "live.json"
REQUESTS_DIR = "requests"
SERVER_STATS_FILE = "server_stats.parquet"
SERVER_BATCHES_FILE = "server_batches.parquet"
ARRIVALS_FILE = "arrivals.parquet"
SERVER_METRICS_FILE = "server_metrics.parquet"
SERVER_STEPS_FILE = "server_steps.parquet"
#: A capacity search's summary, beside its probe run directories (`tritonload.core.knee`).
SEARCH_JSON = "search.json"
#: A bench's batching recommendations and their checks, in its capacity directory.
RECOMMENDATIONS_JSON = "recommendations.json"


def request_part_name(index: int) -> str:
    """File name of the ``index``-th Parquet part of the request records."""
    return f"part-{index:05d}.parquet"


#: Request records: one row per request, successful or not.
REQUESTS = pa.schema([
    ("intended_start_ns", pa.int64()),
    ("start_ns", pa.int64()),
    ("latency_us", pa.float64()),
    ("service_us", pa.float64()),
    ("model", pa.string()),
    ("protocol", pa.string()),
    ("mode", pa.string()),
    ("ok", pa.bool_()),
    ("error_kind", pa.string()),
    ("bytes_sent", pa.int64()),
    ("bytes_received", pa.int64()),
    ("user_id", pa.int32()),
    ("worker", pa.string()),
    # A generation (a decoupled model's stream, `tritonload.load.llm`); null for the rest.
    ("ttft_us", pa.float64()),  # send (the scheduled one in open loop) to the first token
    ("tokens_in", pa.int32()),  # the prompt's length
    ("tokens_out", pa.int32()),  # token responses received
    ("itl_us", pa.list_(pa.float32())),  # the gaps between consecutive tokens
])

#: The generation columns of `REQUESTS` (absent from runs recorded before them).
GENERATION_COLUMNS = ("ttft_us", "tokens_in", "tokens_out", "itl_us")

#: Phases of Triton's per-request statistics, in the order a request goes through them.
PHASES = ("queue", "compute_input", "compute_infer", "compute_output")

#: Per-interval, per-model differences of Triton's cumulative statistics.
SERVER_STATS = pa.schema([
    ("t_start_ns", pa.int64()),
    ("t_end_ns", pa.int64()),
    ("model", pa.string()),
    ("success_count", pa.int64()),
    ("fail_count", pa.int64()),
    ("inference_count", pa.int64()),
    ("execution_count", pa.int64()),
    *[(f"{phase}_ns", pa.int64()) for phase in PHASES],
    *[(f"{phase}_count", pa.int64()) for phase in PHASES],
])

#: Per-interval differences of the statistics of each step of each ensemble in the mix:
#: ``model`` is the step's model, ``ensemble`` the ensemble, ``step`` its place (from 0).
SERVER_STEPS = pa.schema([
    ("ensemble", pa.string()),
    ("step", pa.int64()),
    *SERVER_STATS,
])

#: Per-interval, per-model, per-batch-size execution differences.
SERVER_BATCHES = pa.schema([
    ("t_start_ns", pa.int64()),
    ("t_end_ns", pa.int64()),
    ("model", pa.string()),
    ("batch_size", pa.int64()),
    ("executions", pa.int64()),
    ("compute_infer_ns", pa.int64()),
])

#: Triton's Prometheus metrics, scraped at each statistics sample: one row per kept sample
#: (`tritonload.triton.metrics`), raw (a counter's running total, a gauge's reading).
SERVER_METRICS = pa.schema([
    ("t_ns", pa.int64()),
    ("name", pa.string()),
    ("kind", pa.string()),
    ("model", pa.string()),
    ("gpu", pa.string()),
    ("le", pa.float64()),
    ("quantile", pa.float64()),
    ("value", pa.float64()),
])

#: Open loop: per-interval counts of scheduled, late and dropped sends.
ARRIVALS = pa.schema([
    ("t_start_ns", pa.int64()),
    ("t_end_ns", pa.int64()),
    ("scheduled", pa.int64()),
    ("late", pa.int64()),
    ("dropped", pa.int64()),
])

#: run.json keys every reader may rely on (the writer refuses to write a run.json without them).
RUN_JSON_REQUIRED = ("run_id", "mode", "load", "started_ns", "ended_ns", "target", "warmup_s")
#: run.json keys the engine writes besides the required ones.
RUN_JSON_OPTIONAL = (
    "tool_versions", "scenario", "protocols", "max_in_flight", "users", "user_classes", "mix",
    "achieved_mix", "stability", "started_at", "ended_at", "request_count", "error_counts",
    "arrivals", "models", "payloads", "server_stats_interval_s", "gevent_threadpool_size",
    "client_cpu", "workers", "outages", "validated", "server_metrics", "shared_memory",
    "generation", "generation_load", "extensions", "extra",
)
