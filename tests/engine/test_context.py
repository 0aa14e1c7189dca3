"""User settings: validation in one place, and the target each user class sends to."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tritonload.core.config import Target
from tritonload.core.errors import UsageError
from tritonload.core.mix import ModelMix
from tritonload.load.context import UserSettings

MIX = ModelMix.of("recommender:1")


def test_the_context_and_the_transports_do_not_import_locust():
    # Locust monkey-patches the whole process on import; a fresh interpreter shows who does.
    code = ("import sys, tritonload.load.context, tritonload.wire.grpc, tritonload.wire.http, "
            "tritonload.cli.main; print(sorted(m for m in sys.modules if m.startswith('locust')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_class_headers_and_timeout_reach_the_target_and_command_line_headers_win():
    settings = UserSettings(MIX, "sync", 1, timeout_s=2.5,
                            headers={"Authorization": "Bearer class", "X-Team": "a"})
    target = Target.parse("127.0.0.1:8000", headers={"Authorization": "Bearer cli"})
    sent_to = settings.target_of(target)
    assert dict(sent_to.headers) == {"Authorization": "Bearer cli", "X-Team": "a"}
    assert sent_to.timeout_s == 2.5 and sent_to.http_port == 8000


@pytest.mark.parametrize("kwargs, message", [
    ({"mode": "batch"}, "bad mode 'batch': expected sync, async or open"),
    ({"max_in_flight": 0}, "--max-in-flight must be >= 1, got 0"),
    ({"mode": "open", "rate": None}, "the request rate must be > 0, got 0.0"),
    ({"mode": "open", "rate": 10.0, "arrival": "burst"}, "bad arrival process 'burst'"),
    ({"timeout_s": 0.0}, "request timeout must be > 0 s, got 0.0"),
])
def test_bad_settings_are_one_line(kwargs, message):
    values = {"mix": MIX, "mode": "async", "max_in_flight": 4, **kwargs}
    with pytest.raises(UsageError) as info:
        UserSettings(**values)
    assert str(info.value).startswith(message)
