"""perf_analyzer-style stability: measure in windows until the last few agree.

After a warm-up, a cell is measured in fixed windows. It is *stable* once the throughput and
the P95 of each of the last ``windows`` windows are within ``tolerance`` of their mean; it
gives up after ``max_windows`` and is marked unstable rather than hidden.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tritonload.core.errors import UsageError


@dataclass
class StabilityRule:
    """Feed it one (throughput, p95) per window; it says when to stop."""

    windows: int = 3
    tolerance: float = 0.10
    max_windows: int = 8
    history: list[tuple[float, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.windows < 1 or self.max_windows < self.windows:
            raise UsageError("stability needs 1 <= windows <= max windows")
        if not 0 < self.tolerance < 1:
            raise UsageError("stability tolerance must be between 0 and 1 (e.g. 0.1)")

    def add(self, throughput: float, p95_ms: float | None) -> None:
        """Record one window."""
        self.history.append((throughput, p95_ms if p95_ms is not None else float("nan")))

    @property
    def stable(self) -> bool:
        """Whether the last ``windows`` windows agree within the tolerance."""
        if len(self.history) < self.windows:
            return False
        recent = self.history[-self.windows:]
        for values in zip(*recent, strict=True):
            mean = sum(values) / len(values)
            if not mean > 0 or any(abs(v - mean) > self.tolerance * mean for v in values):
                return False
        return True

    @property
    def done(self) -> bool:
        """Stable, or out of windows."""
        return self.stable or len(self.history) >= self.max_windows

    def summary(self) -> dict:
        """For run.json."""
        return {"stable": self.stable, "windows": [
            {"throughput_rps": round(t, 2), "p95_ms": round(p, 3)} for t, p in self.history],
            "rule": {"windows": self.windows, "tolerance": self.tolerance,
                     "max_windows": self.max_windows}}
