"""The master's validated `RunContext`, as a Locust message its workers can rebuild.

Only the master talks to the server's control plane: it runs the pre-flight once (target,
settings, payloads validated against the served metadata) and hands the result to every
worker, which sends load and nothing else. A worker therefore needs no ``--host`` and never
re-validates; a multi-host worker needs no payload files of its own.

Locust messages are msgpack, which carries dicts, lists, strings and bytes but no numpy
arrays or Python classes, so each part goes over as plain data: a tensor as its dtype, shape
and raw bytes (BYTES tensors item by item), a user class by its name. No pickle: a worker
does not run code it is sent.

Under ``--shared-memory``, a payload's placements go over as region names, offsets and sizes:
the master made and registered the regions, and a worker's requests only name them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tritonload.core.config import Target, TlsFiles
from tritonload.core.mix import ModelMix
from tritonload.load.arrivals import ArrivalLedger
from tritonload.load.context import RunContext, UserSettings
from tritonload.triton.payloads import Payload
from tritonload.triton.shm import EntryPlacement, Placement

#: A worker's users draw from ``seed + worker_index * SEED_STRIDE + user id``, so no two
#: workers replay the same mix draws or open-loop arrival gaps (the workers would otherwise
#: send in lockstep bursts).
SEED_STRIDE = 1_000_003


def _tensor(array: np.ndarray) -> dict[str, Any]:
    if array.dtype.kind == "O":
        items = [bytes(v) if isinstance(v, bytes) else str(v) for v in array.reshape(-1)]
        return {"dtype": "object", "shape": list(array.shape), "items": items}
    return {"dtype": array.dtype.str, "shape": list(array.shape),
            "data": np.ascontiguousarray(array).tobytes()}


def _array(data: Mapping[str, Any]) -> np.ndarray:
    shape = tuple(int(d) for d in data["shape"])
    if data["dtype"] == "object":
        return np.array(list(data["items"]), dtype=object).reshape(shape)
    return np.frombuffer(data["data"], dtype=np.dtype(data["dtype"])).reshape(shape).copy()


def _settings(settings: UserSettings) -> dict[str, Any]:
    return {"mix": [list(pair) for pair in settings.mix.weights], "mode": settings.mode,
            "max_in_flight": settings.max_in_flight, "rate": settings.rate,
            "arrival": settings.arrival, "timeout_s": settings.timeout_s,
            "headers": dict(settings.headers), "error_backoff_s": settings.error_backoff_s}


def _places(placements: Mapping[str, Placement]) -> dict[str, list]:
    return {name: [p.region, p.offset, p.byte_size] for name, p in placements.items()}


def _placements(data: Mapping[str, list]) -> dict[str, Placement]:
    return {name: Placement(str(region), int(offset), int(size))
            for name, (region, offset, size) in data.items()}


def context_message(context: RunContext, rate_users: int) -> dict[str, Any]:
    """What the master sends: the context, and the run's total users (the rate's divisor)."""
    target = {f.name: getattr(context.target, f.name) for f in dataclasses.fields(Target)}
    target["headers"] = dict(context.target.headers)
    target["tls"] = dataclasses.asdict(context.target.tls) if context.target.tls else None
    return {
        "target": target,
        "payloads": {model: {"entries": [{name: _tensor(a) for name, a in entry.items()}
                                         for entry in p.entries],
                             "outputs": list(p.outputs), "source": p.source,
                             "validation": None if p.validation is None else [
                                 {name: _tensor(a) for name, a in item.items()}
                                 for item in p.validation],
                             "shared": None if p.shared is None else [
                                 {"inputs": _places(e.inputs), "outputs": _places(e.outputs)}
                                 for e in p.shared]}
                     for model, p in context.payloads.items()},
        "settings": {cls.__name__: _settings(s) for cls, s in context.settings.items()},
        "seed": context.seed,
        "rate_users": rate_users,
    }


def context_from_message(data: Mapping[str, Any], user_classes: Sequence[type],
                         worker_index: int) -> RunContext:
    """The worker's context: the master's, with this worker's seed and a ledger of its own.

    Settings of a class this worker's locustfile does not define are left out; the master
    only asks a worker to spawn classes it has.
    """
    by_name = {cls.__name__: cls for cls in user_classes}
    settings = {}
    for name, s in data["settings"].items():
        if name in by_name:
            settings[by_name[name]] = UserSettings(
                ModelMix(tuple((str(m), float(w)) for m, w in s["mix"])), s["mode"],
                int(s["max_in_flight"]), s["rate"], s["arrival"], float(s["timeout_s"]),
                dict(s["headers"]), float(s.get("error_backoff_s", 0.0)))
    payloads = {
        model: Payload(model, tuple({name: _array(t) for name, t in entry.items()}
                                    for entry in p["entries"]),
                       tuple(p["outputs"]), p["source"],
                       validation=None if p.get("validation") is None else tuple(
                           {name: _array(t) for name, t in item.items()}
                           for item in p["validation"]),
                       shared=None if p.get("shared") is None else tuple(
                           EntryPlacement(_placements(e["inputs"]), _placements(e["outputs"]))
                           for e in p["shared"]))
        for model, p in data["payloads"].items()}
    target = dict(data["target"])
    target["tls"] = TlsFiles(**target["tls"]) if target.get("tls") else None
    return RunContext(Target(**target), payloads, settings,
                      int(data["seed"]) + worker_index * SEED_STRIDE, ArrivalLedger(),
                      rate_users=int(data["rate_users"]))
