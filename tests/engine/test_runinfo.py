"""run.json's load levels: a mixed run's generations are read at the LLM users' own level."""

from __future__ import annotations

from tritonload.core.mix import ModelMix
from tritonload.load.context import UserSettings
from tritonload.load.runinfo import generation_load


class Llm:
    generative = True


class Classic:
    generative = False


def _settings(mode: str, in_flight: int, rate: float | None) -> UserSettings:
    return UserSettings(ModelMix.of("m:1"), mode, in_flight, rate)


def test_closed_loop_counts_the_llm_users_and_their_requests_in_flight():
    settings = {Llm: _settings("async", 4, None), Classic: _settings("async", 4, None)}
    assert generation_load(settings, {"Llm": 3, "Classic": 5}) == {"kind": "concurrency",
                                                                   "level": 12}


def test_open_loop_takes_the_llm_users_share_of_the_rate():
    settings = {Llm: _settings("open", 8, 40.0), Classic: _settings("open", 8, 40.0)}
    assert generation_load(settings, {"Llm": 1, "Classic": 3}) == {"kind": "rate",
                                                                   "level": 10.0}


def test_a_run_that_is_not_mixed_or_not_started_has_none():
    assert generation_load({Llm: _settings("sync", 1, None)}, {"Llm": 2}) is None
    assert generation_load({Classic: _settings("sync", 1, None)}, {"Classic": 2}) is None
    mixed = {Llm: _settings("sync", 1, None), Classic: _settings("sync", 1, None)}
    assert generation_load(mixed, {}) is None
