"""A weighted model mix: ``text_classifier:5, image_classifier:1, recommender:3``."""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Mapping
from dataclasses import dataclass

from tritonload.core.errors import UsageError


@dataclass(frozen=True)
class ModelMix:
    """Models and their relative weights; `draw` picks one by weight."""

    weights: tuple[tuple[str, float], ...]

    def __post_init__(self) -> None:
        if not self.weights:
            raise UsageError("the model mix is empty")
        for model, weight in self.weights:
            if not model or weight < 0:
                raise UsageError(f"bad mix entry {model}:{weight}: weights must be >= 0")
        if sum(w for _, w in self.weights) <= 0:
            raise UsageError("the model mix has no positive weight")
        cumulative = list(itertools.accumulate(w for _, w in self.weights))
        object.__setattr__(self, "_cumulative", [c / cumulative[-1] for c in cumulative])

    @classmethod
    def of(cls, spec: str | Mapping[str, float]) -> ModelMix:
        """From a mapping or a ``model:weight,model:weight`` string (weight defaults to 1)."""
        if isinstance(spec, Mapping):
            return cls(tuple((str(m), float(w)) for m, w in spec.items()))
        items = []
        for part in str(spec).split(","):
            if not part.strip():
                continue
            model, _, weight = part.strip().partition(":")
            try:
                items.append((model.strip(), float(weight) if weight else 1.0))
            except ValueError:
                raise UsageError(
                    f"bad mix entry {part.strip()!r}: weight is not a number") from None
        return cls(tuple(items))

    @property
    def models(self) -> list[str]:
        """Models with a positive weight."""
        return [m for m, w in self.weights if w > 0]

    def shares(self) -> dict[str, float]:
        """Configured share of each model (0..1)."""
        total = sum(w for _, w in self.weights)
        return {m: w / total for m, w in self.weights}

    def draw(self, rng: random.Random = random) -> str:  # type: ignore[assignment]
        """One model, drawn by weight."""
        index = bisect.bisect_right(self._cumulative, rng.random())
        return self.weights[min(index, len(self.weights) - 1)][0]

    def describe(self) -> str:
        """``model:weight`` form."""
        return ", ".join(f"{m}:{w:g}" for m, w in self.weights)
