"""Locust's own tables, charts, CSV and HTML report to 3 significant digits, not whole ms.

Locust keeps response times in a histogram whose keys it rounds with
`locust.stats.bucket_response_time`, to whole milliseconds below 100 ms: a 4.73 ms model
showed "Median 4, 95%ile 6". Locust 2.47 documents that function as replaceable, so
`install` swaps in one that keeps 3 significant digits (4.73 ms, 0.457 ms, 1230 ms), the
precision of tritonload's own HDR histograms. It runs when the locustfile is imported, so on
every process of a distributed run, before any statistics exist: workers send these keys to
the master, which merges them as they are.

The CSV writer (``--csv``, and the web UI's download) then truncated each percentile with
``int()``; `install` also replaces that one method (`StatsCSV._percentile_fields`, private
in Locust 2.47) with one that keeps the value. The console summary still prints whole
milliseconds (``%6d``); tritonload's own table is the exact one there.

Cost (`benchmarks/locust_buckets.py`, 200,000 requests per entry): a stats entry of a 5 ms
model keeps 1,030 keys instead of 28 (292 KB against 12 KB), a 0.3–1 ms one 918 instead of 3
(304 KB), a mixed 0.5 ms–2 s one 3,301 instead of 200 (1.0 MB against 89 KB). A worker's 3 s
report at 2,000 req/s grows from 351 to 9,046 bytes per entry (887 to 24,116 for the mixed
one), and `log_request` from 1.4–1.8 to 2.5–2.6 µs per request: about 1 µs of the 40–90 µs
the client spends per request. The web UI's "current" percentiles keep up to 20 one-second
copies of the aggregated entry's dict, so that entry can hold 20 times as much.
"""

from __future__ import annotations

import math
from typing import Any

SIGNIFICANT_DIGITS = 3


def bucket_response_time(response_time: float) -> float:
    """A response time (ms) to 3 significant digits: 4.7312 → 4.73, 1234.5 → 1230.0."""
    if response_time <= 0:
        return 0
    digits = SIGNIFICANT_DIGITS - 1 - math.floor(math.log10(response_time))
    return round(response_time, digits)


def _percentile_fields(self: Any, stats_entry: Any, use_current: bool = False) -> list:
    """Locust's CSV percentile columns, without its ``int()``."""
    if not stats_entry.num_requests:
        return self.percentiles_na
    if use_current and stats_entry.use_response_times_cache:
        values = [stats_entry.get_current_response_time_percentile(p)
                  for p in self.percentiles_to_report]
    else:
        values = [stats_entry.get_response_time_percentile(p)
                  for p in self.percentiles_to_report]
    return [value or 0 for value in values]


def install() -> None:
    """Replace Locust's bucketing and CSV percentile formatting (idempotent)."""
    from locust import stats

    stats.bucket_response_time = bucket_response_time
    stats.StatsCSV._percentile_fields = _percentile_fields
