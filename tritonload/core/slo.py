"""SLO gates for CI: ``--slo p95=50ms --slo error_rate=0.5% --min-rps 200``.

Pure: `parse_slo` reads an objective, `evaluate` judges a run's `Numbers`, so the gate
judges exactly the steady window, throughput and percentiles the report shows
(`tritonload.core.numbers`). A breach is exit code 3, in Locust (`tritonload.load.gate`) and
in ``tritonload run`` alike.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from tritonload.core.errors import UsageError
from tritonload.core.numbers import Numbers
from tritonload.core.tokens import TokenNumbers

BREACH_EXIT_CODE = 3
_UNITS_MS = {"us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1000.0}
_SLO = re.compile(r"^\s*(?P<name>p\d+(?:\.\d+)?|error_rate|rps|(?:ttft|itl)(?:_p\d+(?:\.\d+)?)?)"
                  r"\s*(?:=|<=|<)\s*"
                  r"(?P<value>\d+(?:\.\d+)?)\s*(?P<unit>us|µs|ms|s|%)?\s*$")


@dataclass(frozen=True)
class Slo:
    """One objective: a latency percentile (ms), the error rate (fraction), or minimum rps."""

    name: str  # "p95", "p99.9", "error_rate", "rps", "ttft_p95", "itl_p95"
    limit: float

    @property
    def token_metric(self) -> tuple[str, float] | None:
        """``(metric, percentile)`` of a generation objective (``ttft``, ``itl``), else None."""
        metric, _, percentile = self.name.partition("_p")
        return (metric, float(percentile)) if metric in ("ttft", "itl") else None

    def describe(self) -> str:
        """Human form of the limit."""
        if self.token_metric:
            metric, percentile = self.token_metric
            return f"{metric.upper()} P{percentile:g} ≤ {self.limit:.2f} ms"
        if self.name == "error_rate":
            return f"error_rate ≤ {self.limit:.3%}"
        if self.name == "rps":
            return f"throughput ≥ {self.limit:g} req/s"
        return f"{self.name} ≤ {self.limit:.2f} ms"


@dataclass(frozen=True)
class Verdict:
    """An SLO and what the run measured."""

    slo: Slo
    measured: float
    ok: bool

    def line(self) -> str:
        """One line: the measured value against the limit."""
        if self.slo.name == "error_rate":
            value = f"{self.measured:.3%}"
        elif self.slo.name == "rps":
            value = f"{self.measured:.1f} req/s"
        else:
            value = f"{self.measured:.3f} ms"  # µs resolution, as the report
        return f"SLO {self.slo.describe():<28} measured {value:<14} {'OK' if self.ok else 'BREACH'}"


def parse_slo(text: str) -> Slo:
    """Parse ``p95=50ms``, ``p99.9=1s``, ``error_rate=0.5%``, ``rps=200``, ``ttft=200ms``.

    ``ttft`` and ``itl`` judge a generation's P95 (``ttft_p99=…`` for another percentile).
    """
    match = _SLO.match(text)
    if not match:
        raise UsageError(f"bad SLO {text!r}: expected e.g. p95=50ms, p99=120ms, error_rate=0.5%"
                         ", ttft=200ms, itl=30ms")
    name, value, unit = match["name"], float(match["value"]), match["unit"]
    if name.startswith(("ttft", "itl")):
        metric, _, percentile = name.partition("_p")
        if percentile and not 0 < float(percentile) < 100:
            raise UsageError(f"bad SLO {text!r}: percentile must be between 0 and 100")
        if unit in (None, "%"):
            raise UsageError(f"bad SLO {text!r}: give a latency unit (us, ms or s)")
        return Slo(f"{metric}_p{percentile or '95'}", value * _UNITS_MS[unit])
    if name.startswith("p"):
        if not 0 < float(name[1:]) < 100:
            raise UsageError(f"bad SLO {text!r}: percentile must be between 0 and 100")
        if unit in (None, "%"):
            raise UsageError(f"bad SLO {text!r}: give a latency unit (us, ms or s)")
        return Slo(name, value * _UNITS_MS[unit])
    if name == "error_rate":
        if unit not in (None, "%"):
            raise UsageError(f"bad SLO {text!r}: an error rate is a fraction or a percentage")
        rate = value / 100 if unit == "%" else value
        if rate > 1:
            raise UsageError(f"bad SLO {text!r}: an error rate cannot exceed 100%")
        return Slo(name, rate)
    if unit is not None:
        raise UsageError(f"bad SLO {text!r}: rps takes no unit")
    return Slo("rps", value)


def parse_slos(items: list[str], min_rps: float | None = None) -> list[Slo]:
    """All ``--slo`` values plus ``--min-rps``."""
    slos = [parse_slo(item) for item in items]
    if min_rps is not None:
        if min_rps < 0:
            raise UsageError("--min-rps must be >= 0")
        slos.append(Slo("rps", float(min_rps)))
    return slos


def evaluate(slos: list[Slo], numbers: Numbers, tokens: TokenNumbers | None = None
             ) -> list[Verdict]:
    """Judge each SLO on a run's numbers, and the generation objectives on its generations'.

    The numbers are the steady window's (`numbers.run_numbers`, `tokens.run_tokens`).

    A window with no request, or no successful one, breaches every objective it can't show met;
    so does a generation objective on a run without generations.
    """
    verdicts = []
    for slo in slos:
        if slo.token_metric:
            metric, percentile = slo.token_metric
            measured = tokens.percentile_ms(metric, percentile) if tokens else math.nan
            measured = math.inf if math.isnan(measured) else measured
            verdicts.append(Verdict(slo, measured, measured <= slo.limit))
        elif slo.name == "error_rate":
            measured = numbers.error_rate if numbers.requests else 1.0
            verdicts.append(Verdict(slo, measured, measured <= slo.limit))
        elif slo.name == "rps":
            measured = numbers.throughput_rps
            measured = 0.0 if math.isnan(measured) else measured
            verdicts.append(Verdict(slo, measured, measured >= slo.limit))
        else:
            measured = numbers.percentile_ms(float(slo.name[1:]))
            measured = math.inf if math.isnan(measured) else measured
            verdicts.append(Verdict(slo, measured, measured <= slo.limit))
    return verdicts
