"""run.json's document: what was run, against what, and how it went (keys: `core.schema`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gevent

from tritonload.core.rundir import iso, tool_versions
from tritonload.core.slo import Slo
from tritonload.load.arrivals import ArrivalLedger
from tritonload.load.context import RunContext, UserSettings
from tritonload.load.live import ClientCpu
from tritonload.load.recorder import Recorder
from tritonload.load.stability import StabilityRule


def load_level(settings: list[UserSettings], users: int) -> dict[str, Any]:
    """``{"kind": "rate", "level": req/s}`` (open loop) or requests in flight in total."""
    rates = [s.rate for s in settings if s.rate]
    if rates:
        return {"kind": "rate", "level": max(rates)}
    in_flight = max((s.max_in_flight for s in settings), default=1)
    return {"kind": "concurrency", "level": users * in_flight}


def generation_load(settings: Mapping[type, UserSettings],
                    class_users: Mapping[str, int] | None) -> dict[str, Any] | None:
    """The LLM users' own load level in a run that mixes them with classic users.

    The run's ``load`` counts every user. In a mixed run, the generations' TTFT and ITL are
    read against the LLM classes' share alone: their users × requests in flight (closed
    loop), or their share of ``--rate``, which is split evenly over all the users (open
    loop). None for a run that is not mixed (its ``load`` is theirs), or before the users
    are known.
    """
    generative = {c: s for c, s in settings.items() if getattr(c, "generative", False)}
    if not generative or len(generative) == len(settings) or not class_users:
        return None
    users = {c: int(class_users.get(c.__name__, 0)) for c in generative}
    if not any(users.values()):
        return None
    rates = [s.rate for s in generative.values() if s.rate]
    if rates:
        total = max(sum(int(n) for n in class_users.values()), 1)
        return {"kind": "rate", "level": max(rates) * sum(users.values()) / total}
    return {"kind": "concurrency",
            "level": sum(users[c] * s.max_in_flight for c, s in generative.items())}


def run_document(*, run_id: str, scenario: str, context: RunContext, users: int,
                 configs: Mapping[str, dict], warmup_s: float, started_ns: int,
                 ended_ns: int | None, recorder: Recorder | None, arrivals: ArrivalLedger,
                 stability: StabilityRule | None, stats_interval_s: float,
                 tags: Mapping[str, str], slos: list[Slo],
                 client_cpu: ClientCpu | None = None,
                 workers: Mapping[str, dict] | None = None,
                 outages: list[dict] | None = None,
                 server_metrics: Mapping[str, Any] | None = None,
                 shared_memory: Mapping[str, Any] | None = None,
                 generation: Mapping[str, Any] | None = None,
                 extensions: Mapping[str, bool] | None = None,
                 class_users: Mapping[str, int] | None = None) -> dict[str, Any]:
    """The run.json document (without the format stamp `rundir.write_run_json` adds).

    ``client_cpu``: the live ticker's samples of this process's CPU time, from which
    `tritonload.core.validity` judges whether the load generator saturated. ``workers``: on
    a Locust master, each worker's host, users, records, CPU samples and whether it was lost.
    ``outages``: the intervals `tritonload.load.outages.OutageWatch` saw.
    ``server_metrics``: the metrics endpoint scraped (``url``), or why none was (``note``).
    ``shared_memory``: under ``--shared-memory``, its kind, output size and regions made.
    ``generation``: with LLM users, how their prompts were made (`PromptSpec.record`).
    ``class_users``: Locust's users per class (``target_user_classes_count``), which gives
    the classes' ``users`` and a mixed run's `generation_load`.
    ``extensions``: which of Triton's protocol extensions the target serves
    (`tritonload.triton.served.Extensions.record`); None: not probed.
    """
    target = context.target
    settings = list(context.settings.values())
    modes = sorted({s.mode for s in settings})
    return {
        "run_id": run_id,
        "tool_versions": tool_versions(),
        "scenario": scenario,
        "target": {"url": target.describe(), "embedded": target.embedded,
                   **{f"{p}_url": target.url(p) if target.supports(p) else None
                      for p in ("http", "grpc")}},
        "protocols": sorted({c.protocol for c in context.settings}),
        "mode": modes[0] if len(modes) == 1 else "mixed",
        "max_in_flight": max((s.max_in_flight for s in settings), default=1),
        "load": load_level(settings, users),
        "users": users,
        "user_classes": {c.__name__: {"protocol": c.protocol, "mix": s.mix.shares(),
                                      "mode": s.mode, "max_in_flight": s.max_in_flight,
                                      "generative": bool(getattr(c, "generative", False)),
                                      "users": (class_users or {}).get(c.__name__)}
                         for c, s in context.settings.items()},
        "generation_load": generation_load(context.settings, class_users),
        "mix": settings[0].mix.shares() if settings else {},
        "achieved_mix": recorder.achieved_mix() if recorder else {},
        "warmup_s": warmup_s,
        "stability": stability.summary() if stability else None,
        "started_ns": started_ns,
        "ended_ns": ended_ns,
        "started_at": iso(started_ns),
        "ended_at": iso(ended_ns) if ended_ns else None,
        "request_count": recorder.count if recorder else 0,
        "error_counts": dict(recorder.errors) if recorder else {},
        "arrivals": arrivals.totals() if arrivals.counts else None,
        "models": dict(configs),
        "payloads": {m: p.source for m, p in context.payloads.items()},
        "server_stats_interval_s": stats_interval_s,
        "gevent_threadpool_size": gevent.get_hub().threadpool.maxsize,
        "client_cpu": client_cpu.document() if client_cpu else None,
        "workers": dict(workers) if workers is not None else None,
        "outages": outages,
        "server_metrics": dict(server_metrics) if server_metrics is not None else None,
        "shared_memory": dict(shared_memory) if shared_memory is not None else None,
        "generation": dict(generation) if generation is not None else None,
        "extensions": dict(extensions) if extensions is not None else None,
        "validated": sorted(m for m, p in context.payloads.items() if p.validation),
        "extra": {"tags": dict(tags), "slos": [s.describe() for s in slos]},
    }
