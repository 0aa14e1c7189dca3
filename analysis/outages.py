"""Outages and the per-second timeline around them: pure functions over loaded runs.

run.json ``outages`` (`tritonload.load.outages`) says when every request failed; the
timeline says what the load looked like around it, second by second, from the records
(counted by completion time, the rule of the steady window). Only runs with an outage get
a timeline: it is there to show the outage, and a second-by-second count of a long, healthy
run says nothing the throughput table does not.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from tritonload.core.numbers import completion_ns

OUTAGE_COLUMNS = ["run_id", "start_s", "end_s", "duration_s", "kind", "message", "open"]
TIMELINE_COLUMNS = ["run_id", "t_s", "ok", "failed"]

_NS = 1_000_000_000


def _origin_ns(run: Mapping) -> int | None:
    for key in ("started_ns", "records_first_ns"):
        value = run.get(key)
        if value is not None and not pd.isna(value):
            return int(value)
    return None


def outage_table(runs: pd.DataFrame, meta: Mapping[str, Mapping]) -> pd.DataFrame:
    """One row per outage of every run; times in seconds since the run's start."""
    rows = []
    for run in runs.to_dict("records"):
        origin = _origin_ns(run)
        outages = meta.get(run["run_id"], {}).get("outages") or []
        for outage in outages if origin is not None else []:
            start, end = outage.get("start_ns"), outage.get("end_ns")
            if not isinstance(start, int):
                continue
            rows.append({"run_id": run["run_id"], "start_s": (start - origin) / _NS,
                         "end_s": (end - origin) / _NS if isinstance(end, int) else np.nan,
                         "duration_s": outage.get("duration_s"),
                         "kind": str(outage.get("kind") or ""),
                         "message": str(outage.get("message") or ""),
                         "open": bool(outage.get("open"))})
    return pd.DataFrame(rows, columns=OUTAGE_COLUMNS)


def timeline(records: pd.DataFrame, runs: pd.DataFrame, run_ids: list[str]) -> pd.DataFrame:
    """Successful and failed requests per second of each run in ``run_ids``."""
    frames = []
    origins = {r["run_id"]: _origin_ns(r) for r in runs.to_dict("records")}
    for run_id in run_ids:
        origin = origins.get(run_id)
        rec = records[records["run_id"].astype(str) == run_id]
        if origin is None or rec.empty:
            continue
        done = completion_ns(rec["intended_start_ns"], rec["latency_us"])
        second = (np.asarray(done, dtype=np.int64) - origin) // _NS
        ok = rec["ok"].to_numpy(bool)
        counts = pd.DataFrame({"t_s": second, "ok": ok, "failed": ~ok}).groupby("t_s").sum()
        counts = counts.reindex(range(int(second.min()), int(second.max()) + 1), fill_value=0)
        frames.append(pd.DataFrame({"run_id": run_id, "t_s": counts.index.to_numpy(),
                                    "ok": counts["ok"].to_numpy(int),
                                    "failed": counts["failed"].to_numpy(int)}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=TIMELINE_COLUMNS)
