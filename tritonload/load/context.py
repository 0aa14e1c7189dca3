"""What the users of one Locust process share, frozen once the session has validated it.

The session builds one `RunContext` at Locust's ``init`` and hangs it on the environment;
each user reads it there in ``on_start``. Users never import the session, so the session
(which must know the user classes) and the users do not depend on each other.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tritonload.core.config import Target
from tritonload.core.errors import UsageError
from tritonload.core.mix import ModelMix
from tritonload.load.arrivals import ArrivalLedger, ArrivalProcess, ReplayTrace
from tritonload.triton.payloads import Payload

MODES = ("sync", "async", "open")
ATTRIBUTE = "tritonload_context"


@dataclass(frozen=True)
class UserSettings:
    """A user class's resolved settings (class attributes, then command-line overrides)."""

    mix: ModelMix
    mode: str
    max_in_flight: int
    rate: float | None = None  # open loop: total requests per second of the run
    arrival: str = "poisson"
    timeout_s: float = 30.0
    headers: Mapping[str, str] = field(default_factory=dict)  # the class's own; --header wins
    error_backoff_s: float = 0.0  # the first wait after a failure; 0 = none

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UsageError(f"bad mode {self.mode!r}: expected sync, async or open")
        if self.max_in_flight < 1:
            raise UsageError(f"--max-in-flight must be >= 1, got {self.max_in_flight}")
        if self.arrival == "replay" and self.mode != "open":
            raise UsageError("--arrival replay needs --mode open (the trace sets the send "
                             "times)")
        if self.mode == "open" and self.arrival != "replay":
            ArrivalProcess(self.rate or 0.0, self.arrival)  # validates rate and arrival
        if not self.error_backoff_s >= 0:
            raise UsageError(f"--error-backoff must be >= 0 s, got {self.error_backoff_s}")
        if self.error_backoff_s and self.mode == "open":
            raise UsageError("--error-backoff applies to closed loops (sync, async): an open "
                             "loop keeps its schedule")
        if not self.timeout_s > 0:
            raise UsageError(f"request timeout must be > 0 s, got {self.timeout_s}")

    def target_of(self, target: Target) -> Target:
        """The run's target as this user class sends to it: its timeout and headers."""
        return dataclasses.replace(target, timeout_s=self.timeout_s,
                                   headers={**self.headers, **target.headers})


@dataclass(frozen=True)
class RunContext:
    """The target, each model's validated payload and each user class's settings."""

    target: Target
    payloads: Mapping[str, Payload]
    settings: Mapping[type, UserSettings]
    seed: int
    arrivals: ArrivalLedger  # the process's open-loop ledger (a shared sink, reset per test)
    #: Users the open-loop rate is split over: the whole run's, on a Locust worker (sent by
    #: the master); None in a single process, which divides by its own target user count.
    rate_users: int | None = None
    #: ``--arrival replay``: the payloads' timestamps as the process's one schedule.
    replay: ReplayTrace | None = None


PENDING = "tritonload_context_pending"


def expect(environment: Any) -> None:
    """The session's pre-flight has begun: users wait for `attach` instead of failing."""
    setattr(environment, PENDING, True)


def attach(environment: Any, context: RunContext) -> None:
    """Make the context available to the environment's users."""
    setattr(environment, ATTRIBUTE, context)
    setattr(environment, PENDING, False)


#: How long a user waits for the session's pre-flight to attach the context.
CONTEXT_WAIT_S = 30.0


def context_of(environment: Any) -> RunContext:
    """The context the session attached to the environment.

    On a Locust worker the runner connects, and may be told to spawn users, while the
    ``init`` pre-flight is still talking to the server (gevent runs both): a user can start
    before the context exists. It then waits for it, for at most `CONTEXT_WAIT_S`. Seen with
    ``--processes 2``: in 1 of 4 runs, a worker's users failed with "not installed".
    """
    import gevent

    context = getattr(environment, ATTRIBUTE, None)
    deadline = time.monotonic() + CONTEXT_WAIT_S
    while context is None and getattr(environment, PENDING, False) \
            and time.monotonic() < deadline:
        gevent.sleep(0.05)
        context = getattr(environment, ATTRIBUTE, None)
    if context is None:
        raise UsageError("tritonload is not installed: call tritonload.session.install(events) "
                         "in the locustfile")
    return context
