"""Run directories: ids, and every read and write of the format `tritonload.core.schema` defines.

The engine writes through these functions, and so does the synthetic-run generator that the
analysis tests use: a writer that drifts from the schema fails there, not in a user's report.
Writes are crash-safe: each request part is a complete Parquet file, JSON is replaced
atomically.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import platform
import secrets
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tritonload.core import schema
from tritonload.core.errors import UsageError, first_line


def new_run_id() -> str:
    """``YYYYmmdd-HHMMSS-<hex>``, sortable and unique."""
    return f"{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def iso(ns: int) -> str:
    """Wall-clock ns as ISO-8601 UTC."""
    return dt.datetime.fromtimestamp(ns / 1e9, dt.timezone.utc).isoformat(timespec="milliseconds")


def tool_versions() -> dict[str, str]:
    """Versions of everything that shapes the measurement."""
    versions = {"python": platform.python_version()}
    for package in ("tritonload", "locust", "tritonclient", "gevent", "grpcio",
                    "geventhttpclient", "nvidia-pytriton"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def unique_dir(path: str | os.PathLike) -> Path:
    """``path`` if it does not exist yet, else ``path-2``, ``path-3``, ..."""
    base = Path(path)
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    candidate.mkdir(parents=True)
    return candidate


def _atomically(path: Path, write: Any) -> None:
    """``write(tmp)`` to a hidden sibling, then rename it to ``path``.

    A reader never sees half a file, and a failed write (a full disk) leaves nothing behind:
    the name starts with a dot, which Arrow's dataset discovery skips, so ``requests/`` stays
    readable whatever happened to its last part.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_table(path: Path, data: Any, table_schema: pa.Schema) -> None:
    """One Parquet file of exactly ``table_schema``, written atomically."""
    table = _table(data, table_schema)
    _atomically(path, lambda tmp: pq.write_table(table, tmp))


def write_json_atomic(path: Path, document: Mapping[str, Any]) -> None:
    """Write JSON so that a reader never sees half a file."""
    text = json.dumps(document, indent=2, default=str)
    _atomically(Path(path), lambda tmp: tmp.write_text(text))


def check_writable(directory: str | os.PathLike) -> None:
    """Refuse, in one line, a place where run directories cannot be written (before load)."""
    path = Path(directory)
    probe = path / f".tritonload-write-check-{os.getpid()}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"cannot write run directories in {path}: "
                         f"{exc.strerror or exc}") from None


# -- writers -----------------------------------------------------------------------------


def json_ready(value: object) -> object:
    """Nested dicts/lists made JSON-safe: numpy scalars to Python, NaN and inf to None."""
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_run_json(run_dir: Path, info: Mapping[str, Any]) -> None:
    """Write run.json, stamped with the format and its version."""
    missing = [k for k in schema.RUN_JSON_REQUIRED if k not in info]
    unknown = set(info) - set(schema.RUN_JSON_REQUIRED) - set(schema.RUN_JSON_OPTIONAL)
    if missing or unknown:  # a programming error: the schema and the writer disagree
        raise ValueError(f"run.json does not follow the schema: missing {missing}, "
                         f"unknown {sorted(unknown)}")
    write_json_atomic(Path(run_dir) / schema.RUN_JSON,
                      {"format": schema.FORMAT, "format_version": schema.FORMAT_VERSION, **info})


def _table(data: pa.Table | Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]],
           table_schema: pa.Schema) -> pa.Table:
    """Columns, rows or a table, as a table of exactly the schema (same names, order, types)."""
    if isinstance(data, pa.Table):
        if data.schema.names != table_schema.names:
            raise ValueError(f"columns {data.schema.names} differ from {table_schema.names}")
        return data.cast(table_schema)
    if isinstance(data, Mapping):
        return pa.Table.from_pydict(dict(data), schema=table_schema)
    return pa.Table.from_pylist(list(data), schema=table_schema)


def write_request_part(run_dir: Path, index: int, records: pa.Table | Mapping) -> Path:
    """Write request records (columns, or a table) as the ``index``-th Parquet part."""
    directory = Path(run_dir) / schema.REQUESTS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / schema.request_part_name(index)
    _write_table(path, records, schema.REQUESTS)
    return path


def write_server_stats(run_dir: Path, stats: pa.Table | Sequence | Mapping,
                       batches: pa.Table | Sequence | Mapping) -> None:
    """Write the server-statistics deltas and the batch-size histogram."""
    _write_table(Path(run_dir) / schema.SERVER_STATS_FILE, stats, schema.SERVER_STATS)
    _write_table(Path(run_dir) / schema.SERVER_BATCHES_FILE, batches, schema.SERVER_BATCHES)


def write_server_steps(run_dir: Path, steps: pa.Table | Sequence | Mapping) -> None:
    """Write the ensembles' per-step statistics deltas."""
    _write_table(Path(run_dir) / schema.SERVER_STEPS_FILE, steps, schema.SERVER_STEPS)


def write_server_metrics(run_dir: Path, metrics: pa.Table | Sequence | Mapping) -> None:
    """Write the scraped Prometheus samples."""
    _write_table(Path(run_dir) / schema.SERVER_METRICS_FILE, metrics, schema.SERVER_METRICS)


def write_arrivals(run_dir: Path, rows: Sequence[Mapping[str, int]]) -> None:
    """Write the open-loop arrival counts."""
    _write_table(Path(run_dir) / schema.ARRIVALS_FILE, rows, schema.ARRIVALS)


# -- readers -----------------------------------------------------------------------------


def read_run_json(run_dir: str | Path) -> dict:
    """Read and validate ``RUN_DIR/run.json``; every problem is a one-line `UsageError`."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"run directory not found: {run_dir}")
    path = run_dir / schema.RUN_JSON
    if not path.is_file():
        raise UsageError(f"not a run directory (no run.json): {run_dir}")
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"corrupt run.json: {path}: {first_line(exc)}") from None
    if not isinstance(meta, dict) or meta.get("format") != schema.FORMAT:
        raise UsageError(f"not a tritonload run (format is not {schema.FORMAT!r}): {path}")
    if meta.get("format_version") != schema.FORMAT_VERSION:
        raise UsageError(
            f"unsupported run format_version {meta.get('format_version')!r} "
            f"(this tritonload reads {schema.FORMAT_VERSION}): {path}"
        )
    missing = [k for k in schema.RUN_JSON_REQUIRED if k not in meta]
    if missing:
        raise UsageError(f"run.json lacks {', '.join(missing)}: {path}")
    load = meta["load"]
    if not isinstance(load, dict) or "kind" not in load or "level" not in load:
        raise UsageError(f"run.json 'load' must be {{'kind', 'level'}}: {path}")
    return meta


def request_parts(run_dir: str | Path) -> list[Path]:
    """The Parquet parts of a run's request records, in order."""
    return sorted((Path(run_dir) / schema.REQUESTS_DIR).glob("*.parquet"))


def read_records(run_dir: str | Path, columns: Sequence[str]) -> pd.DataFrame:
    """Request records of a run (only ``columns``); an empty frame of that schema if none."""
    parts = request_parts(run_dir)
    selected = pa.schema([schema.REQUESTS.field(c) for c in columns])
    if not parts:
        return selected.empty_table().to_pandas()
    try:
        tables = [pq.read_table(p, columns=list(columns)) for p in parts]
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise UsageError(f"corrupt request records in {run_dir}: {first_line(exc)}") from None
    return pa.concat_tables(tables).to_pandas()


def read_arrivals(run_dir: str | Path) -> pd.DataFrame:
    """The open-loop arrival counts of a run; an empty frame of that schema if it has none."""
    path = Path(run_dir) / schema.ARRIVALS_FILE
    if not path.is_file():
        return schema.ARRIVALS.empty_table().to_pandas()
    try:
        table = pq.read_table(path, columns=schema.ARRIVALS.names)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise UsageError(f"corrupt arrivals file {path}: {first_line(exc)}") from None
    return table.to_pandas()
