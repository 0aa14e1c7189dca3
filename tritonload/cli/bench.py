"""The experiment matrix: protocol × mode × batching × load level, one run directory per cell.

Each cell runs ``locustfiles/bench.py`` headless in a child process (`headless.LocustRun`)
with a warm-up and perf_analyzer's stability rule (windows until the last few agree; see
`stability`). Load levels are total requests in flight (closed loop) or total requests per
second (open loop). At equal level, sync uses ``level`` users with one request each and async
uses ``level / max_in_flight`` users, so the two are compared at the same concurrency.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomllib

from tritonload.cli.headless import LOCUSTFILES, LocustRun
from tritonload.core.config import Target
from tritonload.core.errors import UsageError
from tritonload.core.mix import ModelMix
from tritonload.server.fleet import NOBATCH_SUFFIX

DEFAULT_MIX = "text_classifier:5,image_classifier:1,recommender:3"


@dataclass(frozen=True)
class Matrix:
    """What to measure. Every field can come from flags or a TOML/YAML file."""

    protocols: tuple[str, ...] = ("grpc", "http")
    modes: tuple[str, ...] = ("sync", "async")
    batching: tuple[str, ...] = ("on", "off")
    levels: tuple[int, ...] = (1, 4, 16)
    rates: tuple[float, ...] = ()
    mix: str = DEFAULT_MIX
    max_in_flight: int = 8
    warmup_s: float = 2.0
    window_s: float = 2.0
    stable_windows: int = 3
    max_windows: int = 6
    tolerance: float = 0.10
    arrival: str = "poisson"

    def __post_init__(self) -> None:
        def check(name: str, values: tuple, allowed: tuple) -> None:
            bad = [v for v in values if v not in allowed]
            if bad or not values:
                raise UsageError(
                    f"bench {name}: {bad or 'empty'}; choose from {', '.join(allowed)}")

        check("protocols", self.protocols, ("grpc", "http"))
        check("batching", self.batching, ("on", "off"))
        if self.rates:
            if any(r <= 0 for r in self.rates):
                raise UsageError("bench rates must be > 0 requests/s")
        else:
            check("modes", self.modes, ("sync", "async"))
            if any(level < 1 for level in self.levels) or not self.levels:
                raise UsageError("bench levels must be >= 1 requests in flight")
        if self.max_in_flight < 1 or self.warmup_s < 0 or self.window_s <= 0:
            raise UsageError("bench: max_in_flight >= 1, warmup >= 0 and window > 0 are required")
        for model in ModelMix.of(self.mix).models:
            if model.endswith(NOBATCH_SUFFIX):
                raise UsageError(f"bench mix: name the batching model, not {model!r}; the "
                                 "batching=off cells use its _nobatch twin")

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> Matrix:
        """Read a ``.toml`` or ``.yaml`` matrix; unknown keys are refused."""
        path = Path(path)
        try:
            text = path.read_text()
            if path.suffix in (".yaml", ".yml"):
                import yaml

                data = yaml.safe_load(text) or {}
            else:
                data = tomllib.loads(text)
        except FileNotFoundError:
            raise UsageError(f"matrix file {path} does not exist") from None
        except ImportError:
            raise UsageError("YAML matrices need PyYAML: pip install pyyaml") from None
        except Exception as exc:  # tomllib / yaml parse errors
            raise UsageError(f"matrix file {path}: {str(exc).splitlines()[0]}") from None
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - fields
        if unknown:
            raise UsageError(f"matrix file {path}: unknown key {sorted(unknown)[0]!r}; "
                             f"known: {', '.join(sorted(fields))}")
        data = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**{**data, **overrides})

    def cells(self) -> list[Cell]:
        """Every cell, in run order."""
        cells = []
        for batching in self.batching:
            for protocol in self.protocols:
                if self.rates:
                    cells += [Cell(self, protocol, "open", batching, rate) for rate in self.rates]
                    continue
                for mode in self.modes:
                    cells += [Cell(self, protocol, mode, batching, lv) for lv in self.levels]
        return cells


@dataclass(frozen=True)
class Cell:
    """One measurement: a protocol, a mode, batching on/off, a load level."""

    matrix: Matrix
    protocol: str
    mode: str
    batching: str
    level: float

    @property
    def name(self) -> str:
        """Directory name, e.g. ``grpc-async-on-c16`` or ``http-open-off-r200``."""
        unit = "r" if self.mode == "open" else "c"
        return f"{self.protocol}-{self.mode}-{self.batching}-{unit}{self.level:g}"

    def mix(self) -> str:
        """The matrix mix, or its _nobatch twins when batching is off."""
        suffix = NOBATCH_SUFFIX if self.batching == "off" else ""
        return ",".join(f"{m}{suffix}:{w:g}" for m, w in ModelMix.of(self.matrix.mix).weights)

    def users_and_in_flight(self) -> tuple[int, int]:
        """Users and requests in flight per user for this level."""
        m = self.matrix
        if self.mode == "sync":
            return int(self.level), 1
        if self.mode == "open":
            return 1, max(m.max_in_flight, 64)
        users = max(1, math.ceil(self.level / m.max_in_flight))
        return users, max(1, int(self.level) // users)

    def duration_s(self) -> float:
        """Upper bound of the cell's load time."""
        m = self.matrix
        return m.warmup_s + (m.max_windows + 1) * m.window_s + 2

    def job(self, target: Target, run_dir: Path) -> LocustRun:
        """The headless Locust run for this cell."""
        m = self.matrix
        users, in_flight = self.users_and_in_flight()
        options = ["--mix", self.mix(), "--mode", self.mode, "--max-in-flight", str(in_flight),
                   "--warmup", f"{m.warmup_s:g}", "--window", f"{m.window_s:g}",
                   "--stable-windows", str(m.stable_windows), "--max-windows", str(m.max_windows),
                   "--stability-tolerance", f"{m.tolerance:g}",
                   "--tag", f"cell={self.name}", "--tag", f"batching={self.batching}"]
        if self.mode == "open":
            options += ["--rate", f"{self.level:g}", "--arrival", m.arrival]
        for name, value in target.headers.items():
            options += ["--header", f"{name}={value}"]
        options += ["--request-timeout", f"{target.timeout_s:g}"]
        user_class = "Grpc" if self.protocol == "grpc" else "Http"
        return LocustRun(LOCUSTFILES / "bench.py", target, run_dir, users,
                         self.duration_s(), user_classes=[user_class], options=options)
