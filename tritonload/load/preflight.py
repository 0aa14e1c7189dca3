"""Before any load: the target, each user class's settings, and a validated payload per model.

Every bad input (a wrong model name, a payload that does not match the served metadata, an
unreachable server, a bad option value) raises a one-line `TritonloadError` here, before a
single request is sent. What passes becomes the frozen `RunContext` the users read.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from tritonload.core.config import Target, TlsFiles, parse_pairs
from tritonload.core.errors import UsageError, print_note
from tritonload.core.mix import ModelMix
from tritonload.load.arrivals import ArrivalLedger, ReplayTrace
from tritonload.load.context import RunContext, UserSettings
from tritonload.load.options import option
from tritonload.load.users import TritonUser
from tritonload.server import EmbeddedTriton, Ports
from tritonload.server.fleet import DEMO_SHAPES
from tritonload.triton.access import check_access
from tritonload.triton.admin import TritonAdmin, config_snapshot
from tritonload.triton.metrics import metrics_source
from tritonload.triton.payloads import (
    ModelInfo,
    Payload,
    generate_payload,
    load_payload_file,
    parse_shape_override,
)
from tritonload.triton.prompts import Lengths, PromptSpec, check_generative, prompt_payload
from tritonload.triton.served import (
    Extensions,
    batch_line,
    probe_extensions,
    served_model,
)
from tritonload.triton.shm import SharedRegions, is_local, regions_for

log = logging.getLogger(__name__)


@dataclass
class Preflight:
    """What the checks established, and what they opened (closed by `close`)."""

    context: RunContext
    configs: dict[str, dict]  # model → the served config's performance-relevant part
    admin: TritonAdmin
    server: EmbeddedTriton | None  # the embedded server, when no --host was given
    #: run.json's ``server_metrics``: the metrics endpoint read (``url``, None when not
    #: read) and, when it is not, why (``note``).
    metrics: dict = dataclasses.field(default_factory=lambda: {"url": None, "note": ""})
    #: ``--shared-memory``: the regions the payloads are in (None for ``none``).
    regions: SharedRegions | None = None
    #: run.json's ``generation``: how the LLM users' prompts were made (None without them).
    generation: dict | None = None
    #: Which of Triton's extensions the target serves (`tritonload.triton.served`).
    extensions: Extensions = dataclasses.field(default_factory=Extensions.all_served)

    def shared_memory(self) -> dict | None:
        """run.json's ``shared_memory``: the kind, the output size and the regions made."""
        if self.regions is None:
            return None
        return {"kind": self.regions.kind, "output_size": self.regions.output_size,
                "regions": self.regions.count}

    def close(self) -> None:
        """Release the shared memory and the control-plane connection; stop the embedded server."""
        if self.regions is not None:
            self.regions.release()
        self.admin.close()
        if self.server is not None:
            self.server.stop()
            self.server = None


def preflight(environment: Any) -> Preflight:
    """Resolve and validate everything a run needs; raises `TritonloadError` on bad input."""
    options = environment.parsed_options
    target, server = _target(environment, options)
    try:
        classes = _usable_user_classes(environment, target)
        settings = {cls: user_settings(cls, options) for cls in classes}
        models = sorted({m for s in settings.values() for m in s.mix.models})
        admin = TritonAdmin(target)
        regions = None
        try:
            regions = _shared_memory(target, admin, options)  # refused before any request
            admin.server_live()
            extensions = _extensions(admin, models[0], regions)
            payloads, configs = _payloads(admin, models, options, regions,
                                          _generative_models(settings), extensions)
            settings, replay = _with_replay(environment, settings, payloads)
            _check_access(target, settings)
            metrics = metrics_source(target, option(options, "metrics_url", None))
        except BaseException:
            if regions is not None:
                regions.release()
            admin.close()
            raise
    except BaseException:
        if server is not None:
            server.stop()
        raise
    seed = int(option(options, "seed", 0))
    context = RunContext(target, payloads, settings, seed, ArrivalLedger(), replay=replay)
    generation = prompt_spec(options).record() if _generative_models(settings) else None
    return Preflight(context, configs, admin, server, metrics, regions, generation, extensions)


def _extensions(admin: TritonAdmin, model: str, regions: SharedRegions | None) -> Extensions:
    """Probe the extensions once (after ``model``'s metadata): one line per missing one."""
    admin.metadata(model)  # a wrong name is said as such, not as a missing extension
    extensions = probe_extensions(admin, model)
    for line in extensions.lines(admin.target.describe()):
        print_note(line)
    if regions is not None and regions.kind == "system" and \
            not extensions["system_shared_memory"]:
        raise UsageError(f"--shared-memory system: {admin.target.describe()} does not serve "
                         "the system shared-memory extension; drop --shared-memory")
    return extensions


def refresh(checks: Preflight, environment: Any) -> RunContext:
    """The context for a new test: the settings as the options stand now.

    The web UI's start form edits the mix, mode, in-flight and rate options between tests;
    a model new to the mix gets its payload validated here (on the master, for its workers).
    Raises `TritonloadError` on a bad value.
    """
    options = environment.parsed_options
    context = checks.context
    settings = {cls: user_settings(cls, options) for cls in context.settings}
    models = sorted({m for s in settings.values() for m in s.mix.models} - set(context.payloads))
    payloads = dict(context.payloads)
    if models:
        new_payloads, configs = _payloads(checks.admin, models, options, checks.regions,
                                          _generative_models(settings), checks.extensions)
        payloads.update(new_payloads)
        checks.configs.update(configs)
    settings, replay = _with_replay(environment, settings, payloads)
    checks.context = dataclasses.replace(context, settings=settings, payloads=payloads,
                                         replay=replay)
    return checks.context


def _with_replay(environment: Any, settings: dict[type, UserSettings],
                 payloads: dict[str, Payload]
                 ) -> tuple[dict[type, UserSettings], ReplayTrace | None]:
    """``--arrival replay``: the trace of the replaying classes' models, and its rate.

    The trace's mean rate becomes those classes' ``rate``, so that run.json's load level and
    the open-loop checks speak of what is offered. A trace is one process's schedule: a
    master's workers would each play it whole, so a distributed replay is refused.
    """
    replaying = [cls for cls, s in settings.items() if s.arrival == "replay" and s.mode == "open"]
    if not replaying:
        return settings, None
    from locust.runners import MasterRunner

    if isinstance(environment.runner, MasterRunner):
        raise UsageError("--arrival replay runs in one Locust process: each worker would play "
                         "the whole trace; drop --processes / --master")
    trace = ReplayTrace(payloads, [m for cls in replaying for m in settings[cls].mix.models])
    log.warning("--arrival replay: %d timestamped sends over %.1f s (%.1f req/s), repeated "
                "until the run ends", len(trace.items), trace.period_ns / 1e9, trace.rate)
    replayed = {cls: dataclasses.replace(s, rate=trace.rate) if cls in replaying else s
                for cls, s in settings.items()}
    return replayed, trace


def _target(environment: Any, options: Any) -> tuple[Target, EmbeddedTriton | None]:
    headers = parse_pairs(option(options, "header", []), "--header", "NAME=VALUE")
    timeout = float(option(options, "request_timeout", 30.0))
    tls = TlsFiles.of(option(options, "tls_ca"), option(options, "tls_client_cert"),
                      option(options, "tls_client_key"))
    host = environment.host or option(options, "host", None)
    if host:
        embedded = bool(option(options, "embedded_target", False))
        return Target.parse(host, headers=headers, timeout_s=timeout, embedded=embedded,
                            tls=tls), None
    if tls is not None:
        raise UsageError("--tls-ca, --tls-client-cert and --tls-client-key need --host "
                         "grpcs://… or https://… (the embedded server started without --host "
                         "is plain)")
    from locust.runners import WorkerRunner

    if isinstance(environment.runner, WorkerRunner):
        raise UsageError("workers need --host: the embedded server runs on one machine only")
    base = int(option(options, "embedded_port", 8000))
    server = EmbeddedTriton(ports=Ports(base, base + 1, base + 2))
    log.warning("no --host: starting the embedded Triton server on 127.0.0.1:%d", base)
    server.start()
    return Target(host=server.host, http_port=base, grpc_port=base + 1, embedded=True,
                  headers=headers, timeout_s=timeout, metrics_port=base + 2), server


def _check_access(target: Target, settings: dict[type, UserSettings]) -> None:
    """One refused-or-not inference per protocol and header set the classes will send."""
    asked = {(cls.protocol, tuple(sorted(s.target_of(target).headers.items()))):
             (s.target_of(target), s.mix.models[0]) for cls, s in settings.items()}
    for (protocol, _), (class_target, model) in sorted(asked.items()):
        check_access(class_target, protocol, model)


def _usable_user_classes(environment: Any, target: Target) -> list[type]:
    """The tritonload user classes; a URL that pins one protocol drops the other's classes."""
    classes = [c for c in environment.user_classes if issubclass(c, TritonUser)]
    usable = [c for c in classes if target.supports(c.protocol)]
    if not usable:
        raise UsageError(f"no user class in this locustfile can use {target.describe()}")
    dropped = set(classes) - set(usable)
    if dropped:
        log.warning("target %s: skipping %s", target.describe(),
                    ", ".join(sorted(c.__name__ for c in dropped)))
        environment.user_classes = [c for c in environment.user_classes if c not in dropped]
    return usable


def _number(options: Any, name: str, default: Any, kind: type) -> Any:
    """An option as ``kind``: the web UI's start form sends every value as text."""
    value = option(options, name, default)
    try:
        return None if value is None else kind(value)
    except (TypeError, ValueError):
        raise UsageError(f"--{name.replace('_', '-')}: not a number: {value!r}") from None


def user_settings(cls: type, options: Any) -> UserSettings:
    """Class attributes, overridden by the options given (a given 0 is kept, and refused).

    ``--mix`` is the classic users' mix, ``--llm-mix`` the LLM users'.
    """
    generative = getattr(cls, "generative", False)
    mix_spec = option(options, "llm_mix" if generative else "mix", None) or cls.mix
    mode = option(options, "mode", cls.mode)
    in_flight = _number(options, "max_in_flight", cls.max_in_flight, int)
    rate = _number(options, "rate", cls.rate, float)
    arrival = option(options, "arrival", cls.arrival)
    timeout_s = float(option(options, "request_timeout", cls.timeout_s))
    backoff_s = _number(options, "error_backoff", cls.error_backoff_s, float)
    settings = UserSettings(ModelMix.of(mix_spec), mode, in_flight, rate, arrival, timeout_s,
                            dict(cls.headers), backoff_s)
    if mode == "sync":
        return dataclasses.replace(settings, max_in_flight=1, rate=None)
    return settings if mode == "open" else dataclasses.replace(settings, rate=None)


def _shared_memory(target: Target, admin: TritonAdmin, options: Any) -> SharedRegions | None:
    """``--shared-memory``'s regions (none made yet), after the checks that refuse it."""
    kind = option(options, "shared_memory", None) or "none"
    output_size = option(options, "output_shared_memory_size", None)
    if kind == "none":
        if output_size:
            raise UsageError("--output-shared-memory-size needs --shared-memory system (or cuda)")
        return None
    if not is_local(target.host):
        raise UsageError(f"--shared-memory {kind}: the server must be on this machine, and "
                         f"{target.host!r} is not a loopback address")
    if output_size and option(options, "validate", False):
        raise UsageError("--validate reads each answer's outputs, which "
                         "--output-shared-memory-size moves out of the answer: drop one")
    return regions_for(kind, admin, output_size)


def _placed(payload: Payload, info: ModelInfo, regions: SharedRegions | None) -> Payload:
    """The payload with its tensors in shared memory, when ``--shared-memory`` asks for it."""
    if regions is None:
        return payload
    if regions.output_size:
        _check_output_size(payload, info, regions.output_size)
    placed = regions.place(list(payload.entries), list(payload.outputs))
    return dataclasses.replace(payload, shared=tuple(placed))


def _check_output_size(payload: Payload, info: ModelInfo, output_size: int) -> None:
    """Refuse an output region smaller than an output whose size the metadata fixes."""
    batch = 1
    if info.max_batch_size > 0:
        batch = max(next(iter(entry.values())).shape[0] for entry in payload.entries)
    for tensor in info.output_tensors:
        if tensor.datatype == "BYTES" or any(d < 0 for d in tensor.shape):
            continue  # its size is known only from the answer
        needed = batch * int(np.prod(tensor.shape)) * tensor.numpy_dtype.itemsize
        if needed > output_size:
            raise UsageError(f"--output-shared-memory-size {output_size}: {info.name}'s output "
                             f"{tensor.name!r} needs {needed} bytes at batch {batch}")


def _generative_models(settings: dict[type, UserSettings]) -> set[str]:
    """The models the LLM user classes stream from."""
    return {m for cls, s in settings.items() if getattr(cls, "generative", False)
            for m in s.mix.models}


def prompt_spec(options: Any) -> PromptSpec:
    """The LLM users' prompts as the options ask (`tritonload.triton.prompts`)."""
    return PromptSpec(
        isl=Lengths.parse(option(options, "isl", "128"), "--isl"),
        osl=Lengths.parse(option(options, "osl", "64"), "--osl"),
        system_prompts=_number(options, "num_system_prompts", 0, int),
        system_prompt_length=_number(options, "system_prompt_length", 0, int),
        dataset=option(options, "prompts", None),
        token_ids=bool(option(options, "token_ids", False)))


def _payloads(admin: TritonAdmin, models: list[str], options: Any,
              regions: SharedRegions | None = None, generative: set[str] = frozenset(),
              extensions: Extensions | None = None
              ) -> tuple[dict[str, Payload], dict[str, dict]]:
    """A payload per model (a --payload file, or generated), validated against the server.

    The LLM users' models (``generative``) get prompts (`prompt_spec`). Under
    ``--shared-memory``, each payload's tensors are then written into its regions. Without a
    served model configuration (``extensions``), each model's batch dimension is inferred,
    and said in one line.
    """
    files = parse_pairs(option(options, "payload", []), "--payload", "MODEL=FILE")
    unknown = set(files) - set(models)
    if unknown:
        raise UsageError(f"--payload names model {sorted(unknown)[0]!r}, which is not in "
                         f"the mix ({', '.join(models)})")
    shapes = {m: dict(s) for m, s in DEMO_SHAPES.items()}
    for item in option(options, "shape", []):
        model, name, dims = parse_shape_override(item)
        shapes.setdefault(model, {})[name] = dims
    seed = int(option(options, "seed", 0))
    payloads, configs = {}, {}
    batch_dim = option(options, "batch_dim", "auto")
    spec = prompt_spec(options) if generative else None
    for model in models:
        info, config = served_model(admin, model, extensions, batch_dim)
        if config.get("source") == "metadata":
            print_note(batch_line(model, config))
        if model in generative:
            check_generative(info, spec.token_ids)
        elif info.decoupled:  # the unary users' requests would all fail
            raise UsageError(f"{model} is a decoupled (streaming) model: it answers over "
                             "gRPC streams only; send to it with an LLM user "
                             "(tritonload.users.TritonLLMUser, locustfiles/llm.py), not in "
                             "the classic users' mix")
        configs[model] = config_snapshot(config)
        if model in files:
            payloads[model] = load_payload_file(files[model], info)
        elif model in generative:
            payloads[model] = prompt_payload(info, spec, seed=seed)
        else:
            payloads[model] = generate_payload(info, shapes.get(model),
                                               fill=option(options, "fill", "random"), seed=seed)
        payloads[model] = _placed(payloads[model], info, regions)
    log.info("payloads validated for %s", ", ".join(models))
    return _outputs_to_check(payloads, bool(option(options, "validate", False))), configs


def _outputs_to_check(payloads: dict[str, Payload], validate: bool) -> dict[str, Payload]:
    """Keep ``validation_data`` only under ``--validate`` (the transports check what is kept)."""
    if not validate:
        return {m: dataclasses.replace(p, validation=None) if p.validation else p
                for m, p in payloads.items()}
    checked = sorted(m for m, p in payloads.items() if p.validation)
    if not checked:
        raise UsageError("--validate needs a --payload file with \"validation_data\" "
                         "(expected outputs); none of the mix's payloads has one")
    unchecked = sorted(set(payloads) - set(checked))
    if unchecked:
        log.warning("--validate: no validation_data for %s; its answers are not checked",
                    ", ".join(unchecked))
    log.warning("--validate: checking every answer of %s against validation_data",
                ", ".join(checked))
    return payloads
