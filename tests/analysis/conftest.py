"""Fixtures: small synthetic run directories with known distributions."""

from __future__ import annotations

import pytest
from tritonload.analysis.synthetic import SyntheticModel, write_synthetic_run


@pytest.fixture
def make_run(tmp_path):
    """Return a factory writing a synthetic run under tmp_path."""
    counter = {"n": 0}

    def factory(models=None, name=None, **kwargs):
        counter["n"] += 1
        models = models or [SyntheticModel("dense", rate_rps=200.0)]
        kwargs.setdefault("seed", counter["n"])
        kwargs.setdefault("run_id", f"20240101-000000-{counter['n']:06x}")
        kwargs.setdefault("duration_s", 20.0)
        return write_synthetic_run(tmp_path / (name or f"run{counter['n']}"), models, **kwargs)

    return factory


@pytest.fixture
def Model():
    return SyntheticModel
