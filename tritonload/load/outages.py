"""Outages: when every request fails for ``OUTAGE_MIN_S`` or more, say so once, and when it ends.

A dead target is an error storm: a refused connection fails in microseconds, so a killed
server drew about 3,000 failed requests/s per protocol, and the only trace was the counts.
`OutageWatch` turns the storm into two log lines, ``target unreachable since HH:MM:SS
(reason)`` and ``target back at HH:MM:SS``, and an interval in run.json's ``outages``, which
the validity verdict (`tritonload.core.validity`) and the report read.

It is fed by the live ticker once a second from the recorder's counters (requests and
failures by kind since the start), so it costs nothing per request and works the same on a
Locust master, whose recorder counts its workers' batches. A streak starts at the tick
before the first one whose completed requests all failed, and ends when the first success
after it completed (the recorder keeps that one time; without it, as on a master, at the
tick that saw the success). The tick, not the second, is the resolution of the start: an
error storm can hold the ticker's greenlet back, and one kill-and-restart test saw ticks
stretch past a second. A tick in which nothing completed (every request waiting on
a server that never answers) neither starts nor ends a streak; the requests' timeouts end
the wait and count as failures then.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

#: How long every request must fail before it is called an outage (the issue's figure: a
#: restarted server's connections come back within about a second, and must not count).
OUTAGE_MIN_S = 2.0

_NS = 1_000_000_000


def clock(time_ns: int) -> str:
    """``HH:MM:SS`` in local time, as the log lines print it."""
    return time.strftime("%H:%M:%S", time.localtime(time_ns / _NS))


@dataclass
class Outage:
    """One interval during which every completed request failed."""

    start_ns: int
    end_ns: int | None  # None while it lasts
    kind: str  # the most frequent error kind of the streak
    message: str  # one error message of that kind, when known

    def document(self, run_end_ns: int | None = None) -> dict:
        """For run.json's ``outages``: still open at the end → ends with the run, ``open``."""
        end = self.end_ns if self.end_ns is not None else run_end_ns
        return {"start_ns": self.start_ns, "end_ns": end,
                "duration_s": round((end - self.start_ns) / _NS, 3) if end else None,
                "kind": self.kind, "message": self.message, "open": self.end_ns is None}


class OutageWatch:
    """Reads cumulative request and failure counts each tick; keeps and announces outages."""

    def __init__(self, started_ns: int, min_s: float = OUTAGE_MIN_S) -> None:
        self.min_ns = int(min_s * _NS)
        self.outages: list[Outage] = []
        self._last_ns = started_ns
        self._requests = 0
        self._errors: collections.Counter[str] = collections.Counter()
        self._streak_ns: int | None = None  # the current all-failed streak's start
        self._streak_kinds: collections.Counter[str] = collections.Counter()

    @property
    def current(self) -> Outage | None:
        """The outage going on now, if any."""
        if self.outages and self.outages[-1].end_ns is None:
            return self.outages[-1]
        return None

    def observe(self, now_ns: int, requests: int, errors: Mapping[str, int],
                last_message: str = "", first_ok_ns: int | None = None) -> None:
        """One tick: ``requests`` and ``errors`` (by kind) are totals since the start.

        ``first_ok_ns``: when the tick's first success completed, if known.
        """
        failed = collections.Counter({k: n - self._errors.get(k, 0) for k, n in errors.items()})
        failed = +failed  # drop kinds with no new failure
        completed = requests - self._requests
        succeeded = completed - sum(failed.values())
        tick_start, self._last_ns = self._last_ns, now_ns
        self._requests, self._errors = requests, collections.Counter(errors)
        if succeeded > 0:
            self._streak_ns = None
            self._streak_kinds.clear()
            outage = self.current
            if outage is not None:
                back = now_ns if first_ok_ns is None else max(outage.start_ns,
                                                              min(first_ok_ns, now_ns))
                outage.end_ns = back
                log.warning("target back at %s (unreachable for %.1f s)", clock(back),
                            (back - outage.start_ns) / _NS)
            return
        if not failed:
            return  # nothing completed: neither starts nor ends a streak
        if self._streak_ns is None:
            self._streak_ns = tick_start
        self._streak_kinds.update(failed)
        if self.current is None and now_ns - self._streak_ns >= self.min_ns:
            kind = self._streak_kinds.most_common(1)[0][0]
            outage = Outage(self._streak_ns, None, kind, last_message)
            self.outages.append(outage)
            reason = f"{kind}: {last_message}" if last_message else kind
            log.warning("target unreachable since %s (%s)", clock(outage.start_ns),
                        " ".join(reason.split())[:200])

    def document(self, run_end_ns: int | None) -> list[dict]:
        """run.json's ``outages``."""
        return [o.document(run_end_ns) for o in self.outages]
