"""Load run directories (`tritonload.core.schema`) into pandas DataFrames.

Request records are read with pyarrow, only the columns the analysis needs, with the string
columns dictionary-encoded (pandas ``category``), so ten million records take a few hundred
megabytes. Every failure is a :class:`tritonload.core.errors.UsageError` whose message is one line
naming the offending path.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tritonload.core import schema
from tritonload.core.errors import UsageError, first_line
from tritonload.core.numbers import Numbers, steady_window
from tritonload.core.rundir import read_arrivals, read_run_json, request_parts
from tritonload.core.validity import Validity, client_cpu_shares, judge

try:  # pyarrow is a hard dependency; fail with one line, not an import traceback.
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
except ImportError as exc:  # pragma: no cover - depends on the environment
    pa = pc = pq = None
    _PYARROW_ERROR = str(exc).splitlines()[0]
else:
    _PYARROW_ERROR = ""

log = logging.getLogger(__name__)

#: Record columns the analysis reads (the others are left on disk).
RECORD_COLUMNS = (
    "intended_start_ns",
    "latency_us",
    "model",
    "protocol",
    "mode",
    "ok",
    "error_kind",
    "bytes_sent",
    "bytes_received",
)
#: The columns of `RunSet.generations`: a generation's record (runs without LLM users, or
#: recorded before these columns, have none).
GENERATION_COLUMNS = ("intended_start_ns", "latency_us", "model", "protocol", "mode", "ok",
                      "error_kind", *schema.GENERATION_COLUMNS)
#: String record columns read as dictionaries (pandas ``category``).
CATEGORICAL_COLUMNS = ("model", "protocol", "mode", "error_kind")
#: Columns attached to every record from ``run.json``.
RUN_COLUMNS = ("run_id", "load_kind", "load_level")

SERVER_STATS_COLUMNS = tuple(schema.SERVER_STATS.names)
SERVER_BATCHES_COLUMNS = tuple(schema.SERVER_BATCHES.names)
SERVER_METRICS_COLUMNS = tuple(schema.SERVER_METRICS.names)
SERVER_STEPS_COLUMNS = tuple(schema.SERVER_STEPS.names)
_STEPS_STRINGS = ("ensemble", "model")
#: Its string columns, read as dictionaries (a handful of names repeated at every scrape).
_METRICS_STRINGS = ("name", "kind", "model", "gpu")


@dataclass
class RunSet:
    """One or more loaded runs.

    Attributes:
        runs: one row per run: ``run_id``, ``path``, ``mode``, ``load_kind``, ``load_level``,
            ``users``, ``max_in_flight``, ``started_ns``, ``ended_ns``, ``warmup_s``,
            ``target_url``, ``embedded``, ``request_count``, ``records_first_ns``,
            ``records_last_ns``, ``valid`` and ``invalid_reasons`` (`tritonload.core.validity`,
            the reasons ``"; "``-joined, ``""`` when valid), ``shared_memory`` (run.json's
            ``shared_memory.kind``, ``"none"`` without it), ``client_cpu_us_per_request``
            (every client process's CPU over the steady window ÷ the requests completed in
            it; NaN without CPU samples), and the tag columns ``cell``, ``rep``,
            ``framing``, ``tags`` (:func:`tag_columns`).
        meta: ``run_id`` → the parsed ``run.json``.
        records: request records of every run, with ``run_id``, ``load_kind`` and
            ``load_level`` attached (categorical strings).
        server_stats: ``server_stats.parquet`` of every run, with ``run_id``.
        server_batches: ``server_batches.parquet`` of every run, with ``run_id``.
        server_steps: ``server_steps.parquet`` (the steps of the ensembles in the mix) of
            the runs that sent to an ensemble, with ``run_id``.
        server_metrics: ``server_metrics.parquet`` (Triton's metrics endpoint) of the runs
            that have one, with ``run_id``; run.json's ``server_metrics`` says why a run
            has none.
        warnings: incompatibilities accepted with ``force=True`` and missing optional files.
        generations: the LLM users' requests (a row per generation, `GENERATION_COLUMNS`:
            the request's own columns, TTFT, tokens in and out, the inter-token gaps as an
            array), with ``run_id``, ``load_kind`` and ``load_level`` (in a run that mixes
            them with classic users, the LLM users' own: run.json's ``generation_load``);
            empty without them.

    """

    runs: pd.DataFrame
    meta: dict[str, dict]
    records: pd.DataFrame
    server_stats: pd.DataFrame
    server_batches: pd.DataFrame
    server_steps: pd.DataFrame = field(
        default_factory=lambda: _empty_frame(SERVER_STEPS_COLUMNS, _STEPS_STRINGS))
    server_metrics: pd.DataFrame = field(
        default_factory=lambda: _empty_frame(SERVER_METRICS_COLUMNS, _METRICS_STRINGS))
    warnings: list[str] = field(default_factory=list)
    generations: pd.DataFrame = field(default_factory=lambda: _empty_generations())


def _require_pyarrow() -> None:
    if pa is None:
        raise UsageError(f"cannot read run directories: pyarrow is unusable ({_PYARROW_ERROR})")


def _read_parquet(path: Path, columns: Sequence[str], dictionary: Sequence[str]) -> pa.Table:
    try:
        file_schema = pq.read_schema(path)
        absent = [c for c in columns if c not in file_schema.names]
        if absent:
            raise UsageError(f"{path} lacks column(s) {', '.join(absent)}")
        return pq.read_table(
            path, columns=list(columns), read_dictionary=[c for c in dictionary if c in columns]
        )
    except UsageError:
        raise
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise UsageError(f"corrupt parquet file {path}: {first_line(exc)}") from None


def _to_string_dictionary(table: pa.Table, name: str) -> pa.Table:
    """Make column ``name`` dictionary<int32, string>, whatever the file stored."""
    i = table.schema.get_field_index(name)
    col = table.column(i)
    target = pa.dictionary(pa.int32(), pa.string())
    if col.type != target:
        if pa.types.is_dictionary(col.type):
            col = col.cast(pa.string())
        col = pc.dictionary_encode(col.cast(pa.string()))
        col = col.cast(target)
    return table.set_column(i, name, col)


def _constant_dictionary(value: str, n: int) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(
        pa.array(np.zeros(n, dtype=np.int32)), pa.array([value], pa.string())
    )


def _read_records(run_dir: Path, meta: dict) -> pa.Table:
    req_dir = run_dir / schema.REQUESTS_DIR
    if not req_dir.is_dir():
        raise UsageError(f"run directory has no requests/ folder: {run_dir}")
    parts = request_parts(run_dir)
    tables = [_read_parquet(p, RECORD_COLUMNS, CATEGORICAL_COLUMNS) for p in parts]
    if not tables:
        log.warning("no request records in %s", req_dir)
        tables = [pa.schema([schema.REQUESTS.field(c) for c in RECORD_COLUMNS]).empty_table()]
    out = []
    for t in tables:
        for c in CATEGORICAL_COLUMNS:
            t = _to_string_dictionary(t, c)
        n = t.num_rows
        t = t.append_column("run_id", _constant_dictionary(str(meta["run_id"]), n))
        t = t.append_column("load_kind", _constant_dictionary(str(meta["load"]["kind"]), n))
        t = t.append_column(
            "load_level", pa.array(np.full(n, float(meta["load"]["level"])), pa.float64())
        )
        out.append(t)
    return pa.concat_tables(out)


def _read_generations(run_dir: Path, meta: dict) -> pd.DataFrame | None:
    """The run's generations (records with ``tokens_out``), or None when it has none."""
    tables = []
    for part in request_parts(run_dir):
        if "tokens_out" not in pq.read_schema(part).names:
            return None  # recorded before the generation columns
        t = _read_parquet(part, GENERATION_COLUMNS, ())
        t = t.filter(pc.is_valid(t.column("tokens_out")))
        if t.num_rows:
            tables.append(t)
    if not tables:
        return None
    frame = pa.concat_tables(tables).to_pandas()
    for column in ("model", "protocol", "mode", "error_kind"):
        frame[column] = frame[column].astype(str)
    load = meta.get("generation_load") or meta["load"]  # a mixed run: the LLM users' own
    frame["run_id"] = str(meta["run_id"])
    frame["load_kind"] = str(load["kind"])
    frame["load_level"] = float(load["level"])
    return frame


def _empty_generations() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype="float64") for c in (
        *GENERATION_COLUMNS, *RUN_COLUMNS)})
    for column in ("model", "protocol", "mode", "error_kind", "run_id", "load_kind"):
        frame[column] = frame[column].astype(str)
    return frame


def _read_server_file(run_dir: Path, name: str, columns: Sequence[str], run_id: str,
                      warnings: list[str]) -> pa.Table | None:
    path = run_dir / name
    if not path.is_file():
        msg = f"{path} is missing: server-side metrics unavailable for run {run_id}"
        log.warning(msg)
        warnings.append(msg)
        return None
    t = _read_parquet(path, columns, ("model",))
    t = _to_string_dictionary(t, "model")
    return t.append_column("run_id", _constant_dictionary(run_id, t.num_rows))


def _read_optional(run_dir: Path, name: str, columns: Sequence[str], strings: Sequence[str],
                   run_id: str) -> pa.Table | None:
    """A server table a run may lack (no ensemble, no metrics endpoint): None, no warning."""
    path = run_dir / name
    if not path.is_file():
        return None
    t = _read_parquet(path, columns, strings)
    for column in strings:
        t = _to_string_dictionary(t, column)
    return t.append_column("run_id", _constant_dictionary(run_id, t.num_rows))


def _read_server_metrics(run_dir: Path, run_id: str) -> pa.Table | None:
    """A run's metrics samples; None for a run without them (run.json says why)."""
    return _read_optional(run_dir, schema.SERVER_METRICS_FILE, SERVER_METRICS_COLUMNS,
                          _METRICS_STRINGS, run_id)


def _empty_frame(columns: Sequence[str], strings: Sequence[str] = ("model",)) -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype="int64") for c in columns})
    for c in (*strings, "run_id"):
        frame[c] = pd.Categorical([])
    return frame


def _concat(tables: list[pa.Table], columns: Sequence[str],
            strings: Sequence[str] = ("model",)) -> pd.DataFrame:
    present = [t for t in tables if t is not None]
    tables.clear()  # drop the caller's references too, so self_destruct can free as it goes
    if not present:
        return _empty_frame([*columns, "run_id"], strings)
    table = pa.concat_tables(present).unify_dictionaries()
    present.clear()
    return table.to_pandas(self_destruct=True, split_blocks=True)


def target_key(meta: dict) -> str:
    """Return the identity of a run's target; every embedded server counts as one target."""
    target = meta.get("target") or {}
    if target.get("embedded"):
        return "embedded"
    return str(target.get("url", ""))


def incompatibilities(metas: Sequence[dict], paths: Sequence[str | Path]) -> list[str]:
    """List why runs must not be compared (empty when they may be).

    Two runs are incompatible when their targets differ (all embedded servers count as the
    same target, since each run starts its own on a free port) or when a model they both
    served has a different served configuration (``max_batch_size``, ``dynamic_batching``,
    ``instance_group``).

    Args:
        metas: parsed ``run.json`` of each run.
        paths: the run directories, for the messages.

    Returns:
        One sentence per incompatibility, each naming both run directories.

    """
    problems: list[str] = []
    if not metas:
        return problems
    ref, ref_path = metas[0], paths[0]
    for meta, path in zip(metas[1:], paths[1:], strict=True):
        if target_key(meta) != target_key(ref):
            problems.append(
                f"different targets: {target_key(ref)!r} ({ref_path}) vs "
                f"{target_key(meta)!r} ({path})"
            )
        ref_models, models = ref.get("models") or {}, meta.get("models") or {}
        for name in sorted(set(ref_models) & set(models)):
            if ref_models[name] != models[name]:
                problems.append(
                    f"model {name!r} is served with a different config in {ref_path} and {path}"
                )
    return problems


def ensure_compatible(
    metas: Sequence[dict], paths: Sequence[str | Path], *, force: bool = False
) -> list[str]:
    """Refuse incompatible runs unless ``force``; see :func:`incompatibilities`.

    Returns:
        The warnings to keep when ``force`` let incompatible runs through.

    Raises:
        UsageError: the runs are incompatible and ``force`` is false.

    """
    problems = incompatibilities(metas, paths)
    if problems and not force:
        extra = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UsageError(f"runs are not comparable: {problems[0]}{extra}; pass --force to override")
    warnings = []
    for p in problems:
        msg = f"compared despite incompatibility (--force): {p}"
        log.warning(msg)
        warnings.append(msg)
    return warnings


@contextmanager
def _system_memory_pool() -> Iterator[None]:
    """Allocate Arrow buffers with malloc while loading.

    Arrow's default pool (mimalloc or jemalloc) keeps the memory freed by the Parquet decode
    and the pandas conversion for itself, which numpy and pandas cannot reuse: about 0.7 GB
    for ten million records. Buffers remember their pool, so switching back is safe.
    """
    previous = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        yield
    finally:
        pa.set_memory_pool(previous)


def load_runs(run_dirs: Iterable[str | Path], *, force: bool = False) -> RunSet:
    """Load several run directories into one :class:`RunSet`.

    Args:
        run_dirs: run directories.
        force: load runs whose key metadata are incompatible anyway (the reasons are kept in
            ``RunSet.warnings``).

    Returns:
        The loaded runs.

    Raises:
        UsageError: no directory given, a directory or file is missing or corrupt, a run id
            appears twice, or the runs are incompatible and ``force`` is false.

    """
    _require_pyarrow()
    with _system_memory_pool():
        return _load_runs([Path(p) for p in run_dirs], force=force)


def _load_runs(paths: list[Path], *, force: bool) -> RunSet:
    """Load ``paths``; see :func:`load_runs`."""
    if not paths:
        raise UsageError("no run directory given")
    metas = [read_run_json(p) for p in paths]
    seen: dict[str, Path] = {}
    for meta, path in zip(metas, paths, strict=True):
        rid = str(meta["run_id"])
        if rid in seen:
            raise UsageError(f"run {rid} given twice: {seen[rid]} and {path}")
        seen[rid] = path
    warnings = ensure_compatible(metas, paths, force=force)

    record_tables, stats_tables, batch_tables, metric_tables, rows = [], [], [], [], []
    step_tables: list[pa.Table | None] = []
    generations = []
    for meta, path in zip(metas, paths, strict=True):
        rid = str(meta["run_id"])
        rec = _read_records(path, meta)
        if rec.num_rows:
            ends = pc.add(
                rec.column("intended_start_ns"),
                pc.cast(pc.multiply(rec.column("latency_us"), 1000.0), pa.int64(), safe=False),
            )
            first = pc.min(rec.column("intended_start_ns")).as_py()
            last = pc.max(ends).as_py()
        else:
            ends, first, last = None, None, None
        validity, cpu_per_request = _validity(path, meta, rec, ends, first, last)
        record_tables.append(rec)
        stats_tables.append(
            _read_server_file(path, schema.SERVER_STATS_FILE, SERVER_STATS_COLUMNS, rid, warnings)
        )
        batch_tables.append(
            _read_server_file(path, schema.SERVER_BATCHES_FILE, SERVER_BATCHES_COLUMNS, rid,
                              warnings)
        )
        metric_tables.append(_read_server_metrics(path, rid))
        step_tables.append(_read_optional(path, schema.SERVER_STEPS_FILE, SERVER_STEPS_COLUMNS,
                                          _STEPS_STRINGS, rid))
        generations.append(_read_generations(path, meta))
        rows.append(
            {
                "run_id": rid,
                "path": str(path),
                "mode": str(meta["mode"]),
                "load_kind": str(meta["load"]["kind"]),
                "load_level": float(meta["load"]["level"]),
                "users": _int_or_none(meta.get("users")),
                "max_in_flight": _int_or_none(meta.get("max_in_flight")),
                "started_ns": _int_or_none(meta.get("started_ns")),
                "ended_ns": _int_or_none(meta.get("ended_ns")),
                "warmup_s": float(meta.get("warmup_s") or 0.0),
                "target_url": str((meta.get("target") or {}).get("url", "")),
                "embedded": bool((meta.get("target") or {}).get("embedded", False)),
                "request_count": int(rec.num_rows),
                "records_first_ns": first,
                "records_last_ns": last,
                **tag_columns(meta),
                "valid": validity.valid,
                "invalid_reasons": "; ".join(validity.reasons),
                "shared_memory": str((meta.get("shared_memory") or {}).get("kind", "none")),
                "client_cpu_us_per_request": cpu_per_request,
            }
        )
    del rec, ends  # keep no reference to the Arrow tables, so converting them frees them
    records = _concat(record_tables, [*RECORD_COLUMNS, *RUN_COLUMNS])
    runs = pd.DataFrame(rows)
    log.info("loaded %d runs, %d request records", len(runs), len(records))
    return RunSet(
        runs=runs,
        meta={str(m["run_id"]): m for m in metas},
        records=records,
        server_stats=_concat(stats_tables, SERVER_STATS_COLUMNS),
        server_batches=_concat(batch_tables, SERVER_BATCHES_COLUMNS),
        server_steps=_concat(step_tables, SERVER_STEPS_COLUMNS, _STEPS_STRINGS),
        server_metrics=_concat(metric_tables, SERVER_METRICS_COLUMNS, _METRICS_STRINGS),
        warnings=warnings,
        generations=(pd.concat([g for g in generations if g is not None], ignore_index=True)
                     if any(g is not None for g in generations) else _empty_generations()),
    )


def _validity(path: Path, meta: dict, rec: pa.Table, ends: pa.ChunkedArray | None,
              first: int | None, last: int | None) -> tuple[Validity, float]:
    """`tritonload.core.validity.judge` on the records already loaded (one pass, no latencies).

    The window is `core.numbers.steady_window` with the records' bounds standing in for a
    killed run's, as `core.numbers.run_numbers` does; the judge needs only the window's
    request and success counts. Also returns the client CPU µs per request over the window:
    every process's (a master's workers too), since all of them sent the window's requests.
    """
    window = steady_window(meta.get("started_ns"), meta.get("ended_ns"), meta.get("warmup_s"),
                           first_ns=first, last_ns=last)
    requests = ok = 0
    if ends is not None:
        inside = pc.and_(pc.greater_equal(ends, window.start_ns), pc.less(ends, window.end_ns))
        requests = pc.sum(inside).as_py() or 0
        ok = pc.sum(pc.and_(inside, rec.column("ok"))).as_py() or 0
    numbers = Numbers(int(requests), int(ok), window.duration_s, np.empty(0))
    shares = client_cpu_shares(meta, window)
    cpu_s = sum(shares.values()) * window.duration_s
    per_request = cpu_s / requests * 1e6 if requests else math.nan
    return judge(meta, window, read_arrivals(path), numbers), float(per_request)


def tag_columns(meta: dict) -> dict[str, object]:
    """The bench's run tags (run.json ``extra.tags``) as ``runs`` columns.

    ``cell`` (the cell without the repetition; ``None`` when untagged), ``rep`` (the
    repetition, 1 when untagged), ``framing`` (the sync/async framings the cell takes part in,
    ``"+"``-joined; ``""`` when untagged) and ``tags`` (every tag, ``k=v`` comma-joined).
    """
    tags = (meta.get("extra") or {}).get("tags") or {}
    if not isinstance(tags, dict):
        tags = {}
    rep = _int_or_none(tags.get("rep"))
    return {"cell": str(tags["cell"]) if tags.get("cell") else None,
            "rep": rep if rep is not None and rep >= 1 else 1,
            "framing": str(tags.get("framing") or ""),
            "tags": ",".join(f"{k}={v}" for k, v in sorted(tags.items()))}


def load_run(run_dir: str | Path) -> RunSet:
    """Load one run directory (see :func:`load_runs`)."""
    return load_runs([run_dir])


def _int_or_none(value: object) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


RUNS_COLUMNS = ("run_id", "path", "mode", "load_kind", "load_level", "users", "max_in_flight",
                "started_ns", "ended_ns", "warmup_s", "target_url", "embedded",
                "request_count", "records_first_ns", "records_last_ns", "cell", "rep",
                "framing", "tags", "valid", "invalid_reasons")


def empty_runset() -> RunSet:
    """A run set without runs (a report of capacity searches only)."""
    records = _empty_frame([*RECORD_COLUMNS, *RUN_COLUMNS])
    for column in (*CATEGORICAL_COLUMNS, *RUN_COLUMNS):
        if column in records and column != "load_level":
            records[column] = records[column].astype(str).astype("category")
    return RunSet(runs=pd.DataFrame(columns=list(RUNS_COLUMNS)), meta={}, records=records,
                  server_stats=_empty_frame(SERVER_STATS_COLUMNS),
                  server_batches=_empty_frame(SERVER_BATCHES_COLUMNS), warnings=[])


def load_probe_metrics(run_dirs: Iterable[str], capacity_dir: str | Path
                       ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The metrics samples of capacity probes, and each probe's steady window.

    ``run_id`` is the probe's run directory as its search.json names it (relative to where
    the search ran, or found again as ``capacity_dir/<search>/<probe>``). A probe directory
    that is gone, or has no ``server_metrics.parquet``, is left out (its search still
    reports; only its resources are unknown).
    """
    tables, windows = [], []
    for run_dir in dict.fromkeys(str(d) for d in run_dirs if d):
        named = Path(run_dir)
        moved = Path(capacity_dir) / named.parent.name / named.name
        path = next((p for p in (named, moved) if (p / schema.SERVER_METRICS_FILE).is_file()
                     and (p / schema.RUN_JSON).is_file()), None)
        if path is None:
            continue
        meta = read_run_json(path)
        window = steady_window(meta.get("started_ns"), meta.get("ended_ns"),
                               meta.get("warmup_s"))
        tables.append(_read_server_metrics(path, run_dir))
        windows.append({"run_id": run_dir, "window_start_ns": window.start_ns,
                        "window_end_ns": window.end_ns})
    return (_concat(tables, SERVER_METRICS_COLUMNS, _METRICS_STRINGS),
            pd.DataFrame(windows, columns=["run_id", "window_start_ns", "window_end_ns"]))


def load_capacity(capacity_dir: str | Path) -> tuple[list[dict], list[dict]]:
    """The capacity searches (``*/search.json``) and recommendations.json of a directory."""
    root = Path(capacity_dir)
    searches = []
    for path in sorted(root.glob(f"*/{schema.SEARCH_JSON}")):
        try:
            searches.append(json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            raise UsageError(f"capacity search {path} is unreadable: {exc}") from None
    rec_path = root / schema.RECOMMENDATIONS_JSON
    recommendations = json.loads(rec_path.read_text()) if rec_path.exists() else []
    return searches, recommendations
