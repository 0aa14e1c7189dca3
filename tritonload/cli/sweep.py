"""Server-config sweep (like Model Analyzer, for the embedded server).

For every combination of max_queue_delay_us × preferred batch sizes × instance count, the
embedded server is restarted with that config for one model, and the model is measured at a
few load levels. Configurations are then ranked by the highest throughput whose P95 stays
within the SLO, and the best one is spelled out as a config.pbtxt snippet.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tritonload.core.errors import UsageError
from tritonload.core.numbers import run_numbers
from tritonload.core.rundir import read_run_json
from tritonload.server.fleet import ModelSpec


@dataclass(frozen=True)
class ServerConfig:
    """One point of the grid."""

    max_queue_delay_us: int
    preferred_batch_sizes: tuple[int, ...]
    instances: int

    @property
    def name(self) -> str:
        """Directory-friendly name, e.g. ``delay100-pref8.16-inst2``."""
        preferred = ".".join(map(str, self.preferred_batch_sizes)) or "none"
        return f"delay{self.max_queue_delay_us}-pref{preferred}-inst{self.instances}"

    def apply(self, spec: ModelSpec) -> ModelSpec:
        """The model spec with this config."""
        return dataclasses.replace(spec, max_queue_delay_us=self.max_queue_delay_us,
                                   preferred_batch_sizes=self.preferred_batch_sizes,
                                   instances=self.instances)

    def pbtxt(self) -> str:
        """The config.pbtxt lines this configuration sets."""
        sizes = ", ".join(map(str, self.preferred_batch_sizes))
        preferred = f"  preferred_batch_size: [ {sizes} ]\n" if sizes else ""
        # No `kind`: Triton then places instances on the GPUs when there are any.
        return (f"instance_group [ {{ count: {self.instances} }} ]\n"
                f"dynamic_batching {{\n{preferred}"
                f"  max_queue_delay_microseconds: {self.max_queue_delay_us}\n}}\n")


def grid(delays: list[int], preferred: list[tuple[int, ...]], instances: list[int]
         ) -> list[ServerConfig]:
    """Every combination, validated."""
    if not delays or not preferred or not instances:
        raise UsageError("sweep needs at least one delay, one preferred-size list and one "
                         "instance count")
    if any(d < 0 for d in delays) or any(i < 1 for i in instances):
        raise UsageError("sweep: delays must be >= 0 and instance counts >= 1")
    return [ServerConfig(d, p, i) for d, p, i in itertools.product(delays, preferred, instances)]


def steady_summary(run_dir: Path) -> dict[str, float]:
    """A cell's level, throughput, exact P50/P95 and error rate over its steady window."""
    numbers = run_numbers(run_dir)
    meta = read_run_json(run_dir)
    total = numbers.total
    return {
        "level": meta["load"]["level"],
        "throughput_rps": 0.0 if math.isnan(total.throughput_rps) else total.throughput_rps,
        "p50_ms": total.percentile_ms(50),
        "p95_ms": total.percentile_ms(95),
        "error_rate": total.error_rate if total.requests else 1.0,
        "stable": bool((meta.get("stability") or {}).get("stable", False)),
    }


def rank(rows: pd.DataFrame, slo_p95_ms: float) -> pd.DataFrame:
    """Per config: best throughput within the SLO, its P95, and P95 at the lowest load.

    ``rows`` has one row per config × level with ``config``, ``level``, ``throughput_rps``,
    ``p95_ms`` and ``error_rate``. Configs that never meet the SLO rank last.
    """
    out = []
    for config, group in rows.groupby("config", sort=False):
        within = group[(group.p95_ms <= slo_p95_ms) & (group.error_rate <= 0.01)]
        best = within.loc[within.throughput_rps.idxmax()] if len(within) else None
        lowest = group.loc[group.level.idxmin()]
        out.append({
            "config": config,
            "max_rps_within_slo": float(best.throughput_rps) if best is not None else 0.0,
            "p95_ms_at_that_load": float(best.p95_ms) if best is not None else float("nan"),
            "p95_ms_at_lowest_load": float(lowest.p95_ms),
            "meets_slo": best is not None,
        })
    ranked = pd.DataFrame(out).sort_values(["meets_slo", "max_rps_within_slo"],
                                           ascending=[False, False])
    return ranked.reset_index(drop=True)
