"""A closed loop's request events (`tritonload.load.users.Deferred`): when they fire, and that
none is lost or mistaken for a request's failure."""

from __future__ import annotations

import gevent
import pytest

from tritonload.load.users import Deferred


def test_events_fire_after_every_ready_greenlet_has_run():
    """Two greenlets each queue an event and then do their next step; both steps come
    before either event's listeners (the loop's callback round)."""
    order: list[str] = []
    deferred = Deferred(lambda **event: order.append(f"fired {event['name']}"))

    def user(name: str) -> None:
        deferred.add({"name": name})
        order.append(f"sent {name}")

    gevent.joinall([gevent.spawn(user, "a"), gevent.spawn(user, "b")])
    gevent.sleep(0)
    assert order == ["sent a", "sent b", "fired a", "fired b"]


def test_a_loop_ending_fires_what_waits_and_the_callback_then_fires_nothing():
    fired: list[dict] = []
    deferred = Deferred(lambda **event: fired.append(event))
    deferred.add({"name": "x"})
    deferred()  # the closed loop's ``finally``
    assert fired == [{"name": "x"}]
    gevent.sleep(0)  # the scheduled callback runs with nothing queued
    assert fired == [{"name": "x"}]
    deferred.add({"name": "y"})  # a later event schedules a new round
    gevent.sleep(0)
    assert [e["name"] for e in fired] == ["x", "y"]


class _Stop(Exception):
    pass


def test_a_listeners_exception_is_kept_and_raised_once_by_the_loop():
    seen: list[str] = []

    def fire(**event):
        seen.append(event["name"])
        if event["name"] == "bad":
            raise _Stop("a listener's StopUser")

    deferred = Deferred(fire)
    for name in ("bad", "next"):
        deferred.add({"name": name})
    gevent.sleep(0)
    assert seen == ["bad", "next"]  # the later event still fired
    with pytest.raises(_Stop):
        deferred.raise_kept()
    deferred.raise_kept()  # once only
