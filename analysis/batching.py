"""Dynamic batching on vs off: ``<model>`` (batching on) against ``<model>_nobatch``.

Pure functions over the outputs of :mod:`analysis.metrics`.
"""

from __future__ import annotations

import pandas as pd

from .compare import pair_groups, ratio_columns

NOBATCH_SUFFIX = "_nobatch"


def batching_pairs(metrics: pd.DataFrame) -> list[tuple[str, str]]:
    """Return ``(model, model_nobatch)`` pairs present in the metrics."""
    names = set(metrics["model"].astype(str))
    return sorted(
        (n[: -len(NOBATCH_SUFFIX)], n)
        for n in names
        if n.endswith(NOBATCH_SUFFIX) and n[: -len(NOBATCH_SUFFIX)] in names
    )


def batching_comparison(metrics: pd.DataFrame, server: pd.DataFrame) -> pd.DataFrame:
    """Compare each batched model with its ``_nobatch`` twin at equal protocol, mode and load.

    Args:
        metrics: :func:`analysis.metrics.request_metrics`.
        server: :func:`analysis.metrics.server_metrics`.

    Returns:
        One row per pair and load: ``model`` (the batched name), ``protocol``, ``mode``,
        ``load_kind``, ``load_level``, ``run_on``, ``run_off``, ``throughput_on``/``_off``,
        ``throughput_gain`` (on ÷ off) with ``_lo``/``_hi`` and ``throughput_verdict``,
        ``p95_on_us``/``p95_off_us``, ``p95_ratio`` (on ÷ off) with ``_lo``/``_hi`` and
        ``p95_verdict``, ``mean_batch_on``/``_off``, ``queue_on_us``/``_off_us`` and
        ``compute_on_us``/``_off_us`` (compute_input + compute_infer + compute_output).

    """
    on = ["base", "protocol", "mode", "load_kind", "load_level"]
    cols = ["model", *on[1:], "run_on", "run_off"]
    pairs_present = batching_pairs(metrics)
    if not pairs_present:
        return pd.DataFrame(columns=cols)
    m = metrics.copy()
    m["model"] = m["model"].astype(str)
    twins = {off: base for base, off in pairs_present}
    bases = {base for base, _ in pairs_present}
    m = m[m["model"].isin(bases | set(twins))]
    m["base"] = m["model"].map(lambda n: twins.get(n, n))
    m["batching"] = m["model"].map(lambda n: "off" if n in twins else "on")
    pairs = pair_groups(m, "batching", "off", "on", on)
    if pairs.empty:
        return pd.DataFrame(columns=cols)
    out = pd.DataFrame({"model": pairs["base"].to_numpy()})
    for c in on[1:]:
        out[c] = pairs[c].to_numpy()
    out["run_on"], out["run_off"] = pairs["run_id_b"].to_numpy(), pairs["run_id_a"].to_numpy()
    # A is batching off (the twin), B is on: the B ÷ A ratio is the gain.
    out = ratio_columns(pairs, out).rename(columns={
        "throughput_a": "throughput_off", "throughput_b": "throughput_on",
        "throughput_ratio": "throughput_gain", "throughput_ratio_lo": "throughput_gain_lo",
        "throughput_ratio_hi": "throughput_gain_hi",
        "p95_a_us": "p95_off_us", "p95_b_us": "p95_on_us"})

    srv = server.astype({"run_id": str, "model": str}).set_index(["run_id", "model"])

    def server_value(run: str, model: str, column: str) -> float:
        try:
            return float(srv.loc[(run, model), column])
        except KeyError:
            return float("nan")

    for side, run_col in (("on", "run_on"), ("off", "run_off")):
        models = out["model"] if side == "on" else out["model"] + "_nobatch"
        runs = out[run_col]
        out[f"mean_batch_{side}"] = [server_value(r, n, "mean_batch_size")
                                     for r, n in zip(runs, models, strict=True)]
        out[f"queue_{side}_us"] = [server_value(r, n, "queue_us")
                                   for r, n in zip(runs, models, strict=True)]
        out[f"compute_{side}_us"] = [
            server_value(r, n, "compute_input_us") + server_value(r, n, "compute_infer_us")
            + server_value(r, n, "compute_output_us")
            for r, n in zip(runs, models, strict=True)
        ]
    return out.reset_index(drop=True)
