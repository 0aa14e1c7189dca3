"""What a KServe v2 server serves beyond the core protocol, probed once before a run.

Every v2 server answers liveness, model metadata, model readiness and inference. Triton also
serves four extensions tritonload reads: the model configuration (``max_batch_size``, the
batch dimension, decoupled models), statistics (the server-side queue and compute breakdown),
the repository index (the models listed when a name is wrong) and system shared memory.
kserve 0.21 serves none of them (`tritonload.triton.admin` says how it answers), so each one
is probed once at pre-flight: a missing one is one line, a field of run.json, and a run that
goes on without what it gave.

Without a served configuration, the batch dimension comes from the metadata: a model whose
every input shape starts with -1 takes a batch dimension (a v2 server puts the batch in the
shape; Triton's own metadata does the same), and ``--batch-dim yes|no`` overrides that. The
largest batch is then unknown; tritonload sends batch 1 either way, so the inferred config
says ``max_batch_size`` 1 (batched) or 0, with ``"source": "metadata"``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from tritonload.core.errors import UsageError
from tritonload.triton.admin import NotServed, TritonAdmin
from tritonload.triton.payloads import ModelInfo

#: Each extension, its name in lines, and what a run does without it.
EXTENSIONS: dict[str, tuple[str, str]] = {
    "model_configuration": ("model configuration",
                            "batch dimension inferred from the metadata shapes"),
    "statistics": ("statistics", "no server-side breakdown for this run"),
    "repository_index": ("repository index", "a wrong model name cannot list the served ones"),
    "system_shared_memory": ("system shared memory", "--shared-memory system is refused"),
}

BATCH_DIM_CHOICES = ("auto", "yes", "no")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Extensions:
    """Which of `EXTENSIONS` the target serves (run.json's ``extensions``)."""

    served: dict[str, bool]

    @classmethod
    def all_served(cls) -> Extensions:
        """A target known to serve them all (the embedded Triton)."""
        return cls(dict.fromkeys(EXTENSIONS, True))

    def __getitem__(self, name: str) -> bool:
        return self.served.get(name, True)

    def missing(self) -> list[str]:
        """The extensions not served, in `EXTENSIONS` order."""
        return [name for name in EXTENSIONS if not self[name]]

    def lines(self, where: str) -> list[str]:
        """One line per missing extension: what it is and what the run does without it."""
        return [f"{EXTENSIONS[name][0]} extension not served by {where}: {EXTENSIONS[name][1]}"
                for name in self.missing()]

    def record(self) -> dict[str, bool]:
        """run.json's ``extensions``."""
        return {name: self[name] for name in EXTENSIONS}


def _served(call: Any, *args: Any) -> bool:
    try:
        call(*args)
    except NotServed:
        return False
    return True


def probe_extensions(admin: TritonAdmin, model: str) -> Extensions:
    """Ask once for each extension; ``model`` is one whose metadata the server has given.

    Any failure other than `NotServed` (an unreachable server, a refused header) propagates:
    it is not an answer about the extension.
    """
    return Extensions({
        "model_configuration": _served(admin.config, model),
        "statistics": _served(admin.statistics, model),
        "repository_index": _served(admin.repository_index),
        "system_shared_memory": _served(admin.system_shared_memory),
    })


def batched_by_shapes(metadata: dict[str, Any]) -> bool:
    """Whether every input's shape starts with -1: the sign of a batch dimension."""
    inputs = metadata.get("inputs", [])
    return bool(inputs) and all(t["shape"] and int(t["shape"][0]) == -1 for t in inputs)


def inferred_config(metadata: dict[str, Any], batch_dim: str = "auto") -> dict[str, Any]:
    """A config for a server that serves none: its batch dimension, from the shapes.

    ``batch_dim`` "yes" or "no" overrides what the shapes say.
    """
    if batch_dim not in BATCH_DIM_CHOICES:
        raise UsageError(f"--batch-dim {batch_dim!r}: choose one of "
                         f"{', '.join(BATCH_DIM_CHOICES)}")
    batched = batched_by_shapes(metadata) if batch_dim == "auto" else batch_dim == "yes"
    if batched and not all(t["shape"] for t in metadata.get("inputs", [])):
        raise UsageError(f"--batch-dim yes: {metadata.get('name')} has a scalar input, which "
                         "has no dimension to batch on")
    return {"max_batch_size": 1 if batched else 0, "source": "metadata",
            "batch_dim": batch_dim}


def batch_line(model: str, config: dict[str, Any]) -> str:
    """What was inferred about ``model``'s batch dimension, for the pre-flight line."""
    how = ("given by --batch-dim" if config.get("batch_dim", "auto") != "auto"
           else "inferred from its metadata shapes (--batch-dim yes|no overrides)")
    if config["max_batch_size"]:
        return f"{model} takes a batch dimension, {how}; requests carry batch 1"
    return f"{model} has no batch dimension, {how}; requests carry its shapes as they are"


def served_model(admin: TritonAdmin, model: str, extensions: Extensions | None = None,
                 batch_dim: str = "auto") -> tuple[ModelInfo, dict[str, Any]]:
    """``model``'s description and config: the served config, or one inferred from metadata.

    ``extensions``: what `probe_extensions` found (None: ask for the config, and infer it if
    the server does not serve it). A wrong name or a model that is not ready is said by the
    metadata and readiness calls, before any extension is asked.
    """
    metadata = admin.metadata(model)
    admin.model_ready(model)
    config = None
    if extensions is None or extensions["model_configuration"]:
        try:
            config = admin.config(model)
        except NotServed:
            config = None
    if config is None:
        config = inferred_config(metadata, batch_dim)
    elif batch_dim != "auto":
        log.warning("--batch-dim %s ignored for %s: its served config says max_batch_size %d",
                    batch_dim, model, config["max_batch_size"])
    return ModelInfo.from_served(metadata, config), config
