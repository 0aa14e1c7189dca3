"""The SLO gate inside a Locust process: at quit, judge the run and set exit code 3 on a breach.

It judges the run directory through `tritonload.core.numbers.run_numbers`, the same steady
window, throughput and percentiles as ``tritonload run`` and the report, and says which
window that is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tritonload.core.numbers import run_numbers
from tritonload.core.slo import BREACH_EXIT_CODE, Slo, Verdict, evaluate
from tritonload.core.tokens import run_tokens

log = logging.getLogger(__name__)


class SloGate:
    """Locust listener: at quit, judge the SLOs on the finished run directory."""

    def __init__(self, slos: list[Slo], run_dir: Callable[[], Path | None]) -> None:
        self.slos = slos
        self.run_dir = run_dir
        self.verdicts: list[Verdict] = []

    def register(self, environment: Any) -> SloGate:
        """Hook ``quitting``.

        Register it before the listener that finalises the run directory: Locust fires
        ``quitting`` in reverse order of registration.
        """
        environment.events.quitting.add_listener(self.on_quitting)
        return self

    def on_quitting(self, environment: Any, **_: Any) -> None:
        """Judge and set the process exit code."""
        run_dir = self.run_dir()
        if run_dir is None or not self.slos:
            return
        numbers = run_numbers(run_dir)
        tokens = run_tokens(run_dir) if any(s.token_metric for s in self.slos) else None
        self.verdicts = evaluate(self.slos, numbers.total, tokens)
        log.warning("SLOs judged on the steady window: %s", numbers.describe_window())
        for verdict in self.verdicts:
            log.warning(verdict.line())
        if not all(v.ok for v in self.verdicts):
            environment.process_exit_code = BREACH_EXIT_CODE
