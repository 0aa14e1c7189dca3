"""What the server's hardware did, from Triton's metrics endpoint (``server_metrics.parquet``).

Pure functions over the scraped samples (long rows: ``t_ns``, ``name``, ``kind``, ``model``,
``gpu``, ``le``, ``quantile``, ``value``; see docs/run-directory.md):

* :func:`resource_table`: per run, over its steady window, the utilisation and memory of the
  host CPU and of every GPU, power, the energy used, and energy per inference;
* :func:`pending_series`: per run and sampling interval, the requests waiting in Triton's
  schedulers beside the queue time the statistics API measured in the same interval.

Why counters are differenced between the first and last scrape *inside* the window, and not
between the window's bounds: the scrapes are the only instants at which a counter is known.
Energy (``nv_energy_consumption``, joules since the server started) and inferences
(``nv_inference_count``, batch items) are differenced over the same two scrapes, so joules
per inference is a ratio of two quantities measured over one interval. A run whose window
holds fewer than two scrapes uses all of its scrapes (``metrics_window`` says which).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Columns of :func:`resource_table`.
RESOURCE_COLUMNS = [
    "run_id", "scrapes", "metrics_window", "interval_s", "requests_per_s", "inferences_per_s",
    "cpu_utilization", "cpu_memory_used_bytes", "cpu_memory_total_bytes", "gpus",
    "gpu_utilization", "gpu_memory_used_bytes", "gpu_memory_total_bytes", "gpu_power_w",
    "energy_j", "joules_per_inference", "inferences_per_joule", "pending_mean", "pending_max",
]
#: Columns of :func:`pending_series`.
PENDING_COLUMNS = ["run_id", "t_s", "pending", "queue_us"]

_NS = 1_000_000_000


def _window_scrapes(frame: pd.DataFrame, windows: pd.DataFrame) -> tuple[pd.DataFrame, set]:
    """The samples of the scrapes inside each run's steady window, and the runs that fell back.

    A run with fewer than two scrapes inside keeps all of its scrapes (a counter needs two).
    """
    bounds = windows.set_index("run_id")
    run = frame["run_id"].astype(str)
    start = run.map(bounds["window_start_ns"]).to_numpy(np.float64)
    end = run.map(bounds["window_end_ns"]).to_numpy(np.float64)
    t = frame["t_ns"].to_numpy(np.float64)
    inside = (t >= start) & (t <= end)
    scrapes_inside = frame[inside].groupby(run[inside], observed=True)["t_ns"].nunique()
    fallback = {r for r in run.unique() if scrapes_inside.get(r, 0) < 2}
    keep = inside | run.isin(fallback).to_numpy()
    return frame[keep], fallback


def _per_scrape(samples: pd.DataFrame, name: str) -> pd.Series:
    """A family summed over its labels (models, GPUs, reasons) at each scrape: t_ns → value."""
    rows = samples[samples["name"] == name]
    return rows.groupby("t_ns")["value"].sum().sort_index()


def _increase(series: pd.Series) -> float:
    """A counter's increase from the first to the last scrape (NaN with fewer than two)."""
    return float(series.iloc[-1] - series.iloc[0]) if len(series) >= 2 else np.nan


def _mean(series: pd.Series) -> float:
    return float(series.mean()) if len(series) else np.nan


def _max(series: pd.Series) -> float:
    return float(series.max()) if len(series) else np.nan


def _ratio(a: float, b: float) -> float:
    return a / b if b and np.isfinite(a) and np.isfinite(b) and b > 0 else np.nan


def _gpu_mean(samples: pd.DataFrame, name: str) -> float:
    """A per-GPU gauge's mean over scrapes and GPUs (the mean GPU's reading)."""
    rows = samples[samples["name"] == name]
    return float(rows["value"].mean()) if len(rows) else np.nan


def _run_resources(samples: pd.DataFrame) -> dict:
    times = np.sort(samples["t_ns"].unique())
    span_s = (times[-1] - times[0]) / _NS if len(times) >= 2 else np.nan
    inferences = _increase(_per_scrape(samples, "nv_inference_count"))
    successes = _increase(_per_scrape(samples, "nv_inference_request_success"))
    energy = _increase(_per_scrape(samples, "nv_energy_consumption"))
    gpus = samples.loc[samples["name"].str.startswith("nv_gpu_") & (samples["gpu"] != ""),
                       "gpu"].nunique()
    pending = _per_scrape(samples, "nv_inference_pending_request_count")
    return {
        "scrapes": len(times),
        "interval_s": span_s,
        "requests_per_s": _ratio(successes, span_s),
        "inferences_per_s": _ratio(inferences, span_s),
        "cpu_utilization": _mean(_per_scrape(samples, "nv_cpu_utilization")),
        "cpu_memory_used_bytes": _max(_per_scrape(samples, "nv_cpu_memory_used_bytes")),
        "cpu_memory_total_bytes": _max(_per_scrape(samples, "nv_cpu_memory_total_bytes")),
        "gpus": int(gpus),
        "gpu_utilization": _gpu_mean(samples, "nv_gpu_utilization"),
        # Memory and power add up over GPUs: the deployment's total at its peak scrape.
        "gpu_memory_used_bytes": _max(_per_scrape(samples, "nv_gpu_memory_used_bytes")),
        "gpu_memory_total_bytes": _max(_per_scrape(samples, "nv_gpu_memory_total_bytes")),
        "gpu_power_w": _mean(_per_scrape(samples, "nv_gpu_power_usage")),
        "energy_j": energy,
        "joules_per_inference": _ratio(energy, inferences),
        "inferences_per_joule": _ratio(inferences, energy),
        "pending_mean": _mean(pending),
        "pending_max": _max(pending),
    }


def resource_table(server_metrics: pd.DataFrame, windows: pd.DataFrame) -> pd.DataFrame:
    """Per run, what the hardware did over the steady window (:data:`RESOURCE_COLUMNS`).

    Gauges (utilisation, memory, power, pending requests) are read at each scrape: their
    mean, or for memory the peak. Utilisation is a share in [0, 1]: the host's CPU, and the
    mean over GPUs. Counters (requests, inferences, energy) are increases over the window's
    scrapes. A value the server does not report (no GPU, no energy counter) is NaN; ``gpus``
    is 0 on a server without GPU metrics.
    """
    if server_metrics.empty:
        return pd.DataFrame(columns=RESOURCE_COLUMNS)
    samples, fallback = _window_scrapes(server_metrics, windows)
    rows = []
    for run_id, run_samples in samples.groupby(samples["run_id"].astype(str), observed=True):
        rows.append({"run_id": run_id,
                     "metrics_window": "whole run" if run_id in fallback else "steady window",
                     **_run_resources(run_samples)})
    return pd.DataFrame(rows, columns=RESOURCE_COLUMNS)


def pending_series(server_metrics: pd.DataFrame, server_stats: pd.DataFrame,
                   runs: pd.DataFrame) -> pd.DataFrame:
    """Per run and statistics interval: pending requests and mean queue time.

    ``pending`` is ``nv_inference_pending_request_count`` summed over the models at the
    scrape that ends the interval (the sampler scrapes at the instant it closes one);
    ``queue_us`` is the interval's queue time per request from the statistics API, over the
    same models (NaN in an interval without requests). ``t_s`` counts from the run's start.
    """
    pending = server_metrics[server_metrics["name"] == "nv_inference_pending_request_count"]
    if pending.empty:
        return pd.DataFrame(columns=PENDING_COLUMNS)
    at = (pending.assign(run_id=pending["run_id"].astype(str))
          .groupby(["run_id", "t_ns"])["value"].sum().rename("pending").reset_index())
    if server_stats.empty:
        at["queue_us"] = np.nan
    else:
        stats = server_stats.assign(run_id=server_stats["run_id"].astype(str))
        queue = stats.groupby(["run_id", "t_end_ns"])[["queue_ns", "queue_count"]].sum()
        queue = queue.reset_index().rename(columns={"t_end_ns": "t_ns"})
        at = at.merge(queue, on=["run_id", "t_ns"], how="left")
        count = at["queue_count"].to_numpy(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            at["queue_us"] = np.where(count > 0, at["queue_ns"] / count / 1000.0, np.nan)
    started = runs.assign(run_id=runs["run_id"].astype(str)).set_index("run_id")["started_ns"]
    at["t_s"] = (at["t_ns"] - at["run_id"].map(started).astype(np.float64)) / _NS
    return at[PENDING_COLUMNS].sort_values(["run_id", "t_s"], ignore_index=True)
