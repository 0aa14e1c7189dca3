"""The experiment matrix: protocol × mode × batching × load level (× transfer), one run each.

Each run executes ``locustfiles/bench.py`` headless in a child process (`headless.LocustRun`)
with a warm-up and perf_analyzer's stability rule (windows until the last few agree; see
`stability`). Load levels are total requests in flight (closed loop) or total requests per
second (open loop).

Sync and async are set side by side in two framings (``Matrix.framings``):

* ``equal-in-flight``: at level N, sync runs N users × 1 request and async
  ``ceil(N / max_in_flight)`` users × ``N / users`` requests, so both keep N requests in flight.
* ``equal-users``: sync N users × 1 against async N users × ``max_in_flight`` (cells named
  ``…-async-…-u<N>x<k>``): the same client footprint, k times the requests in flight. This is
  the framing of the usual "async gives 3-5x the throughput" claim.

``shared_memory`` adds a transfer dimension: ``("none", "system")`` runs every cell twice,
tensors on the wire and in system shared memory (``--shared-memory system``; with
``output_shared_memory_size``, the answers' tensors too), the shared cells named ``…-shm``
and tagged ``shared_memory=system``; the report sets each beside its wire twin.

Every cell runs ``repetitions`` times, interleaved: round r runs every cell once, in an order
shuffled with a RNG seeded by ``seed``, so a drift over the minutes a bench takes (another
tenant, thermal state) spreads over every cell instead of biasing the cells that ran last.
Each repetition is its own run directory, ``<cell>-rep<r>``, tagged ``cell=<cell>`` and
``rep=<r>`` (run.json ``extra.tags``); the analysis pairs repetition r of one cell with
repetition r of another, since they ran in the same round.
"""

from __future__ import annotations

import dataclasses
import math
import random
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
#: Sync and async at equal requests in flight (today's pairing at one load level).
EQUAL_IN_FLIGHT = "equal-in-flight"
#: Sync and async at equal users: async keeps ``max_in_flight`` times the requests in flight.
EQUAL_USERS = "equal-users"
FRAMINGS = (EQUAL_IN_FLIGHT, EQUAL_USERS)


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
    repetitions: int = 3
    seed: int = 0
    framings: tuple[str, ...] = FRAMINGS
    shared_memory: tuple[str, ...] = ("none",)
    output_shared_memory_size: int | None = None

    def __post_init__(self) -> None:
        def check(name: str, values: tuple, allowed: tuple) -> None:
            bad = [v for v in values if v not in allowed]
            if bad or not values:
                raise UsageError(
                    f"bench {name}: {bad or 'empty'}; choose from {', '.join(allowed)}")

        check("protocols", self.protocols, ("grpc", "http"))
        check("batching", self.batching, ("on", "off"))
        check("shared_memory", self.shared_memory, ("none", "system"))
        if self.output_shared_memory_size is not None and (
                self.output_shared_memory_size < 1 or "system" not in self.shared_memory):
            raise UsageError("bench output_shared_memory_size: bytes >= 1, and it needs "
                             "system in shared_memory")
        if self.rates:
            if any(r <= 0 for r in self.rates):
                raise UsageError("bench rates must be > 0 requests/s")
        else:
            check("modes", self.modes, ("sync", "async"))
            check("framings", self.framings, FRAMINGS)
            if "sync" not in self.modes and EQUAL_IN_FLIGHT not in self.framings:
                raise UsageError("bench: the equal-users framing sets async beside sync; "
                                 "add sync to the modes or equal-in-flight to the framings")
            if any(level < 1 for level in self.levels) or not self.levels:
                raise UsageError("bench levels must be >= 1 requests in flight")
        if self.max_in_flight < 1 or self.warmup_s < 0 or self.window_s <= 0:
            raise UsageError("bench: max_in_flight >= 1, warmup >= 0 and window > 0 are required")
        if not 1 <= self.stable_windows <= self.max_windows:
            raise UsageError("bench: 1 <= stable_windows <= max_windows is required")
        if self.repetitions < 1:
            raise UsageError("bench repetitions must be >= 1")
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
        """Every cell once, in matrix order (no repetitions; see :meth:`schedule`).

        Closed loop: sync at each level; async at each level (``equal-in-flight``) and, when
        sync is measured too, async with as many users as each sync level has
        (``equal-users``). An async cell both framings ask for (same users and requests in
        flight per user) runs once and belongs to both.
        """
        cells: list[Cell] = []
        for batching in self.batching:
            for protocol in self.protocols:
                if self.rates:
                    cells += [Cell(self, protocol, "open", batching, rate) for rate in self.rates]
                    continue
                for mode in self.modes:
                    if mode == "sync":
                        cells += [Cell(self, protocol, mode, batching, lv,
                                       framings=self.framings) for lv in self.levels]
                        continue
                    if EQUAL_IN_FLIGHT in self.framings:
                        cells += [Cell(self, protocol, mode, batching, lv,
                                       framings=(EQUAL_IN_FLIGHT,)) for lv in self.levels]
                    if EQUAL_USERS in self.framings and "sync" in self.modes:
                        cells += [Cell(self, protocol, mode, batching,
                                       users * self.max_in_flight, users=users,
                                       framings=(EQUAL_USERS,)) for users in self.levels]
        cells = _merge_duplicates(cells)
        return [dataclasses.replace(c, shared_memory=transfer)
                for transfer in self.shared_memory for c in cells]

    def schedule(self) -> list[Cell]:
        """Every repetition, in run order: round 1 runs each cell once, then round 2, ….

        The order within each round is a fresh shuffle from one ``random.Random(seed)``, so
        it is reproducible, differs between rounds, and no cell always runs first or last.
        """
        rng = random.Random(self.seed)
        cells = self.cells()
        order: list[Cell] = []
        for rep in range(1, self.repetitions + 1):
            round_cells = list(cells)
            rng.shuffle(round_cells)
            order += [dataclasses.replace(c, rep=rep) for c in round_cells]
        return order


def _merge_duplicates(cells: list[Cell]) -> list[Cell]:
    """One cell per distinct load (protocol, mode, batching, users × in flight)."""
    merged: dict[tuple, Cell] = {}
    for cell in cells:
        key = (cell.protocol, cell.mode, cell.batching, cell.level, cell.users_and_in_flight())
        seen = merged.get(key)
        if seen is None:
            merged[key] = cell
        else:
            framings = seen.framings + tuple(f for f in cell.framings if f not in seen.framings)
            merged[key] = dataclasses.replace(seen, framings=framings)
    return list(merged.values())


@dataclass(frozen=True)
class Cell:
    """One measurement: a protocol, a mode, batching on/off, a load level (and a repetition).

    ``level`` is the total load (requests in flight, or requests/s for ``open``); ``users``
    is set for an ``equal-users`` async cell, which runs ``users`` users × ``level / users``
    requests in flight. ``framings`` are the sync/async framings the cell takes part in;
    ``rep`` is the repetition (0: the cell itself, not one of its runs).
    """

    matrix: Matrix
    protocol: str
    mode: str
    batching: str
    level: float
    users: int | None = None
    framings: tuple[str, ...] = ()
    rep: int = 0
    shared_memory: str = "none"  # "system": tensors in shared memory, not on the wire

    @property
    def cell_name(self) -> str:
        """Return the cell's name, without the repetition.

        E.g. ``grpc-async-on-c16``, ``http-open-off-r200``, or ``grpc-async-on-u4x8`` for an
        async cell of the ``equal-users`` framing only; ``…-shm`` with shared memory.
        """
        shm = "-shm" if self.shared_memory != "none" else ""
        if self.mode == "open":
            return f"{self.protocol}-open-{self.batching}-r{self.level:g}{shm}"
        if self.users is not None and EQUAL_IN_FLIGHT not in self.framings:
            users, in_flight = self.users_and_in_flight()
            return f"{self.protocol}-{self.mode}-{self.batching}-u{users}x{in_flight}{shm}"
        return f"{self.protocol}-{self.mode}-{self.batching}-c{self.level:g}{shm}"

    @property
    def name(self) -> str:
        """Directory name: the cell name, plus ``-rep<r>`` for a repetition."""
        return f"{self.cell_name}-rep{self.rep}" if self.rep else self.cell_name

    def tags(self) -> dict[str, str]:
        """run.json ``extra.tags`` of this cell's runs."""
        tags = {"cell": self.cell_name, "batching": self.batching,
                "shared_memory": self.shared_memory}
        if self.rep:
            tags["rep"] = str(self.rep)
        if self.mode != "open":
            users, in_flight = self.users_and_in_flight()
            tags.update(users=str(users), in_flight=str(in_flight))
            if self.framings:
                tags["framing"] = "+".join(self.framings)
        return tags

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
        if self.users is not None:
            return self.users, max(1, int(self.level) // self.users)
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
                   "--stability-tolerance", f"{m.tolerance:g}"]
        for name, value in self.tags().items():
            options += ["--tag", f"{name}={value}"]
        if self.mode == "open":
            options += ["--rate", f"{self.level:g}", "--arrival", m.arrival]
        for name, value in target.headers.items():
            options += ["--header", f"{name}={value}"]
        options += ["--request-timeout", f"{target.timeout_s:g}"]
        if self.shared_memory != "none":
            options += ["--shared-memory", self.shared_memory]
            if m.output_shared_memory_size:
                options += ["--output-shared-memory-size", str(m.output_shared_memory_size)]
        user_class = "Grpc" if self.protocol == "grpc" else "Http"
        return LocustRun(LOCUSTFILES / "bench.py", target, run_dir, users,
                         self.duration_s(), user_classes=[user_class], options=options)
