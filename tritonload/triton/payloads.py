"""Payloads: perf_analyzer ``--input-data`` files or directories, or generated tensors.

Whatever the source, a payload is validated against the model's served metadata before any
load starts, and becomes a tuple of entries (input name → numpy array, batch dim included)
that the users turn once into protocol-specific prebuilt requests.

Why perf_analyzer's rules and not our own: a payload file is meant to drive both tools, so a
file that one takes and the other refuses, or that they read into different tensors, makes
their numbers incomparable. The forms accepted here are the ones perf_analyzer 2.41 was seen
to accept on this machine (each case of tests/engine/test_input_data_conformance.py runs
both tools on one file), not the ones its documentation suggests: it refuses nested lists
and JSON integers for a float input, which an earlier loader here took, and it reads
``{"b64": ..., "shape": [...]}``, which that loader refused. A refusal is one line naming the
file, the entry and the input, so a bad row in a large file is found without bisecting it.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tritonclient.utils import triton_to_np_dtype

from tritonload.core.errors import UsageError
from tritonload.triton.shm import EntryPlacement

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TensorInfo:
    """A served input: name, Triton datatype and shape *without* the batch dimension."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    @property
    def numpy_dtype(self) -> np.dtype:
        """The numpy dtype of the tensor (object for BYTES)."""
        return np.dtype(triton_to_np_dtype(self.datatype))


@dataclass(frozen=True)
class ModelInfo:
    """What a payload must match: inputs, output names and whether a batch dim is expected."""

    name: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[str, ...]
    max_batch_size: int
    #: The served outputs (datatype, shape without the batch dim): what ``validation_data``
    #: is read against.
    output_tensors: tuple[TensorInfo, ...] = ()
    #: A decoupled model (``model_transaction_policy { decoupled: true }``): it answers with a
    #: stream of responses, over gRPC's ModelStreamInfer or HTTP's generate_stream only.
    decoupled: bool = False

    @classmethod
    def from_served(cls, metadata: Mapping[str, Any], config: Mapping[str, Any]) -> ModelInfo:
        """Build from `TritonAdmin.metadata()` and `.config()` answers."""
        batching = int(config.get("max_batch_size", 0)) > 0

        def tensor(entry: Mapping[str, Any]) -> TensorInfo:
            shape = tuple(int(d) for d in entry["shape"])
            return TensorInfo(entry["name"], entry["datatype"], shape[1:] if batching else shape)

        return cls(
            name=metadata["name"],
            inputs=tuple(tensor(t) for t in metadata.get("inputs", [])),
            outputs=tuple(t["name"] for t in metadata.get("outputs", [])),
            max_batch_size=int(config.get("max_batch_size", 0)),
            output_tensors=tuple(tensor(t) for t in metadata.get("outputs", [])),
            decoupled=bool(config.get("model_transaction_policy", {}).get("decoupled")),
        )


@dataclass(frozen=True)
class Payload:
    """Validated request data for one model: entries are used round-robin."""

    model: str
    entries: tuple[Mapping[str, np.ndarray], ...]
    outputs: tuple[str, ...]
    source: str
    # Entries per perf_analyzer data stream, in order (entries are the streams concatenated);
    # empty for a generated payload. Parsed and exposed; the load engine walks entries only.
    streams: tuple[int, ...] = ()
    # The file's ``validation_data``: per entry, output name → the expected tensor (batch dim
    # included), read by the inputs' rules; None without one. Checked under ``--validate``.
    validation: tuple[Mapping[str, np.ndarray], ...] | None = None
    # Each entry's ``timestamp`` (ms, as given; 2.41 ignores the key, newer perf_analyzers
    # and AIPerf's fixed schedules send by it), None where an entry has none; None if no
    # entry has one. ``--arrival replay`` sends by them (`tritonload.load.arrivals`).
    timestamps: tuple[float | None, ...] | None = None
    # ``--shared-memory``: per entry, where its inputs (and outputs, if placed) are in the
    # registered regions (`tritonload.triton.shm`); None when tensors go over the wire.
    shared: tuple[EntryPlacement, ...] | None = None

    def bytes_per_entry(self) -> list[int]:
        """Tensor bytes each entry sends."""
        return [sum(_nbytes(a) for a in entry.values()) for entry in self.entries]


def _nbytes(array: np.ndarray) -> int:
    if array.dtype.kind == "O":
        return sum(4 + len(as_bytes(v)) for v in array.reshape(-1))
    return int(array.nbytes)


def as_bytes(value: object) -> bytes:
    """A BYTES element as bytes (numpy object arrays may hold str)."""
    return value if isinstance(value, bytes) else str(value).encode()


# -- shapes --------------------------------------------------------------------------------

def parse_shape_override(text: str) -> tuple[str, str, tuple[int, ...]]:
    """Parse ``MODEL.INPUT=D1,D2`` (dims without the batch dim): text_classifier.input_ids=128."""
    target, sep, dims = text.partition("=")
    model, dot, name = target.partition(".")
    try:
        shape = tuple(int(d) for d in dims.split(",") if d.strip())
    except ValueError:
        shape = ()
    if not sep or not dot or not model or not name or not shape or min(shape) < 1:
        raise UsageError(f"bad --shape {text!r}: expected MODEL.INPUT=D1[,D2...] with dims >= 1")
    return model, name, shape


def resolve_shape(info: ModelInfo, tensor: TensorInfo, override: tuple[int, ...] | None) -> tuple:
    """The concrete shape to generate: the served shape with variable dims filled in."""
    if override is not None:
        _check_shape(info, tensor, override)
        return override
    if any(d < 0 for d in tensor.shape):
        raise UsageError(
            f"{info.name}: input {tensor.name!r} has variable shape {list(tensor.shape)}; "
            f"give one with --shape {info.name}.{tensor.name}=D1[,D2...]"
        )
    return tensor.shape


def _check_shape(info: ModelInfo, tensor: TensorInfo, shape: tuple[int, ...]) -> None:
    expected = list(tensor.shape)
    ok = len(shape) == len(expected) and all(
        e < 0 or e == s for e, s in zip(expected, shape, strict=True))
    if not ok:
        raise UsageError(
            f"{info.name}: input {tensor.name!r} shape mismatch: expected {expected} "
            f"(without batch dim), got {list(shape)}"
        )


# -- generated payloads --------------------------------------------------------------------

def generate_payload(
    info: ModelInfo,
    shapes: Mapping[str, tuple[int, ...]] | None = None,
    fill: str = "random",
    count: int = 8,
    seed: int = 0,
) -> Payload:
    """Make ``count`` entries from the metadata: random values (seeded) or zeros."""
    if fill not in ("random", "zeros"):
        raise UsageError(f"bad fill {fill!r}: expected random or zeros")
    if count < 1:
        raise UsageError("payload entry count must be >= 1")
    shapes = shapes or {}
    unknown = set(shapes) - {t.name for t in info.inputs}
    if unknown:
        raise UsageError(f"{info.name}: --shape names unknown input {sorted(unknown)[0]!r}")
    rng = np.random.default_rng(seed)
    concrete = {t.name: resolve_shape(info, t, shapes.get(t.name)) for t in info.inputs}
    entries = []
    for _ in range(count):
        entry = {}
        for tensor in info.inputs:
            shape = concrete[tensor.name]
            entry[tensor.name] = _with_batch(info, _generate(tensor, shape, fill, rng))
        entries.append(entry)
    return Payload(info.name, tuple(entries), info.outputs, f"generated:{fill}")


def _generate(tensor: TensorInfo, shape: tuple, fill: str, rng: np.random.Generator) -> np.ndarray:
    dtype = tensor.numpy_dtype
    if dtype.kind == "O":
        words = ["tritonload"] * int(np.prod(shape)) if fill == "zeros" else [
            f"w{v}" for v in rng.integers(0, 1000, int(np.prod(shape)))]
        return np.array([w.encode() for w in words], dtype=object).reshape(shape)
    if fill == "zeros":
        return np.zeros(shape, dtype=dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, shape).astype(dtype)
    if np.issubdtype(dtype, np.integer):
        high = min(np.iinfo(dtype).max, 30000)  # token-id-like range
        low = 0 if np.iinfo(dtype).min == 0 else 1
        return rng.integers(low, high, shape).astype(dtype)
    return rng.random(shape, dtype=np.float32).astype(dtype)


def _with_batch(info: ModelInfo, array: np.ndarray) -> np.ndarray:
    return array[np.newaxis, ...] if info.max_batch_size > 0 else array


# -- perf_analyzer input-data files --------------------------------------------------------
#
# What perf_analyzer 2.41 accepts, found by running it (tests/engine/test_input_data_conformance.py
# feeds the same files to both):
#
# * an input is a flat list of JSON values, ``{"content": list | {"b64": str}, "shape": [...]}``,
#   ``{"b64": str, "shape": [...]}``, or ``{"b64": str}`` / ``{"content": ...}`` without a
#   shape, which then comes from the model (a variable dim there is refused);
# * values are typed as JSON types: a float input needs JSON numbers with a fraction or
#   exponent (``1`` is refused, ``1.0`` taken; NaN and Infinity are read), an integer input
#   JSON integers within range, BOOL true/false, BYTES strings; nested lists are refused;
# * b64 is decoded leniently (characters outside the alphabet are skipped), and its size
#   must be exactly the shape's: perf_analyzer checks bytes for every fixed-size datatype;
# * ``data`` is a list of entries, or a list of streams (lists of entries), not a mix;
# * keys of an entry that are not inputs (``model``, ``parameters``, ``timestamp``, a typo)
#   are ignored, a missing input is refused;
# * ``validation_data``, if present, has one item per entry (per stream, then per step);
# * a directory holds one file per input, named after it: raw little-endian bytes of a
#   batch-1 tensor, or, for BYTES, one string per line; other files are ignored, and a
#   variable-shape input cannot be given this way (there is nowhere to put its shape).
#
# perf_analyzer does not count BYTES elements against the shape (the server refuses such a
# request later); tritonload checks them here, so a bad file fails before any load.

_B64_ALPHABET = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
_METADATA_KEYS = "model", "parameters", "timestamp"  # not inputs, ignored without a warning


def load_payload_file(path: str | Path, info: ModelInfo) -> Payload:
    """Read a perf_analyzer ``--input-data`` JSON file or directory, validated against the model."""
    path = Path(path)
    if path.is_dir():
        return _load_directory(path, info)
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"payload file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"payload file {path} is not valid JSON: {exc}") from None
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, list) or not data:
        raise UsageError(f"payload file {path}: expected {{\"data\": [ ...entries... ]}}")
    streamed = [isinstance(item, list) for item in data]
    if any(streamed) and not all(streamed):
        raise UsageError(f"payload file {path}: \"data\" mixes streams (lists of entries) and "
                         "entries; give only one of the two")
    streams = [list(item) for item in data] if all(streamed) else [data]
    if any(not stream for stream in streams):
        raise UsageError(f"payload file {path}: a stream in \"data\" has no entries")
    flat = [entry for stream in streams for entry in stream]
    places = _places(path, streams, all(streamed))
    entries = tuple(_parse_entry(info, places[i], entry) for i, entry in enumerate(flat))
    validation = _validation(path, document, streams, all(streamed), info, places)
    return Payload(info.name, entries, info.outputs, str(path),
                   tuple(len(s) for s in streams), validation, _timestamps(flat, places))


def _timestamps(flat: list[dict], places: list[str]) -> tuple[float | None, ...] | None:
    """Each entry's ``timestamp``; one that is not a number is ignored (2.41 ignores them all)."""
    if not any("timestamp" in entry for entry in flat):
        return None
    stamps: list[float | None] = []
    for entry, where in zip(flat, places, strict=True):
        value = entry.get("timestamp")
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            log.warning("%s: timestamp %r is not a number; ignored", where, value)
            value = None
        stamps.append(value)
    return tuple(stamps)


def _places(path: Path, streams: list[list], streamed: bool) -> list[str]:
    """How each entry is named in errors: its index in the flat order (and its stream)."""
    places, index = [], 0
    for s, stream in enumerate(streams):
        for k in range(len(stream)):
            places.append(f"{path.name}: entry {index}" + (f" (stream {s}, step {k})"
                                                           if streamed else ""))
            index += 1
    return places


def _validation(path: Path, document: dict, streams: list[list], streamed: bool,
                info: ModelInfo, places: list[str]) -> tuple[dict[str, np.ndarray], ...] | None:
    """``validation_data`` (expected outputs), aligned with the entries, read as tensors.

    An output the model does not serve is ignored with a warning, as perf_analyzer 2.41
    ignores it (seen: such a file runs, exit 0); an output given is read like an input.
    """
    if "validation_data" not in document:
        return None
    expected = document["validation_data"]
    shaped = (isinstance(expected, list) and len(expected) == len(streams)
              and all(isinstance(e, list) and len(e) == len(s)
                      for e, s in zip(expected, streams, strict=True))) if streamed else (
        isinstance(expected, list) and len(expected) == len(streams[0]))
    if not shaped:
        raise UsageError(f"{path.name}: \"validation_data\" does not align with \"data\" "
                         "(one item per entry)")
    items = [e for stream in expected for e in stream] if streamed else expected
    if not all(isinstance(e, dict) for e in items):
        raise UsageError(f"{path.name}: \"validation_data\" items must be objects of output "
                         "name → data")
    outputs = {t.name: t for t in info.output_tensors}
    decoded = []
    for item, place in zip(items, places, strict=True):
        where = place.replace(": entry", ": validation_data entry", 1)
        unknown = sorted(set(item) - set(outputs))
        if unknown:
            log.warning("%s: model %s has no output %r; not checked", where, info.name,
                        unknown[0])
        decoded.append({name: _with_batch(info, _parse_value(
            outputs[name], value, f"{where}, output {name!r}"))
            for name, value in item.items() if name in outputs})
    return tuple(decoded)


def _parse_entry(info: ModelInfo, where: str, entry: object) -> dict[str, np.ndarray]:
    if not isinstance(entry, dict):
        raise UsageError(f"{where}: expected an object of input name → data")
    expected = {t.name for t in info.inputs}
    missing = [t.name for t in info.inputs if t.name not in entry]
    if missing:
        raise UsageError(f"{where}, input {missing[0]!r}: missing (model {info.name} needs "
                         f"{', '.join(t.name for t in info.inputs)})")
    ignored = sorted(set(entry) - expected - set(_METADATA_KEYS))
    if ignored:  # perf_analyzer 2.41 ignores them too
        log.warning("%s: model %s has no input %r; ignored", where, info.name, ignored[0])
    parsed = {}
    for tensor in info.inputs:
        array = _parse_value(tensor, entry[tensor.name], f"{where}, input {tensor.name!r}")
        parsed[tensor.name] = _with_batch(info, array)
    return parsed


def _parse_value(tensor: TensorInfo, value: object, where: str) -> np.ndarray:
    shape: tuple[int, ...] | None = None
    content: object = value
    if isinstance(value, dict):
        if "shape" in value:
            shape = _parse_dims(value["shape"], where)
        if "b64" in value:
            content = value
        elif "content" in value:
            content = value["content"]
        else:
            raise UsageError(f"{where}: the object needs \"content\" or \"b64\"")
    elif not isinstance(value, list):
        raise UsageError(f"{where}: expected a list of values, {{\"b64\": ...}} or "
                         "{\"content\": ..., \"shape\": ...}")
    if shape is None:
        shape = tensor.shape
    if any(d < 0 for d in shape):
        raise UsageError(f"{where}: variable shape {list(tensor.shape)} needs the entry's own "
                         "\"shape\": {\"content\" or \"b64\": ..., \"shape\": [...]}")
    _check_entry_shape(tensor, shape, where)
    dtype = tensor.numpy_dtype
    count = math.prod(shape)
    if isinstance(content, list):
        flat = _decode_list(content, tensor, where)
        if flat.size != count:
            raise UsageError(f"{where}: {flat.size} values, the shape {list(shape)} needs "
                             f"{count}")
    elif isinstance(content, dict) and "b64" in content:
        flat = _decode_b64(content["b64"], tensor, shape, where)
    else:
        raise UsageError(f"{where}: \"content\" must be a list of values or {{\"b64\": ...}}")
    return flat.astype(dtype, copy=False).reshape(shape)


def _parse_dims(dims: object, where: str) -> tuple[int, ...]:
    if not isinstance(dims, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) for d in dims):
        raise UsageError(f"{where}: \"shape\" must be a list of integers, got {dims!r}")
    return tuple(dims)


def _check_entry_shape(tensor: TensorInfo, shape: tuple[int, ...], where: str) -> None:
    expected = list(tensor.shape)
    ok = len(shape) == len(expected) and all(
        e < 0 or e == s for e, s in zip(expected, shape, strict=True))
    if not ok:
        raise UsageError(f"{where}: shape {list(shape)} does not match the model's "
                         f"{expected} (dims without the batch dim)")


def _decode_list(values: list, tensor: TensorInfo, where: str) -> np.ndarray:
    """JSON values typed as perf_analyzer types them: no nesting, no silent conversion."""
    dtype = tensor.numpy_dtype
    if dtype.kind == "O":
        check, kind = (lambda v: isinstance(v, str)), "strings"
    elif dtype.kind == "b":
        check, kind = (lambda v: isinstance(v, bool)), "true/false"
    elif dtype.kind in "iu":
        info = np.iinfo(dtype)
        check, kind = (lambda v: isinstance(v, int) and not isinstance(v, bool)
                       and info.min <= v <= info.max), f"integers within {dtype.name}"
    else:
        check, kind = (lambda v: isinstance(v, float)), "numbers with a fraction or exponent"
    for i, v in enumerate(values):
        if not check(v):
            what = "a nested list (give flat row-major values)" if isinstance(v, list) else repr(v)
            raise UsageError(f"{where}: value {i} is {what}; {tensor.datatype} needs {kind}")
    if dtype.kind == "O":
        return np.array([v.encode() for v in values], dtype=object)
    if dtype.kind == "f":
        with np.errstate(over="ignore"):  # 1e39 in FP32 is inf, as perf_analyzer sends it
            return np.array(values, dtype=np.float64).astype(dtype)
    return np.array(values, dtype=dtype)


def _decode_b64(text: object, tensor: TensorInfo, shape: tuple[int, ...], where: str
                ) -> np.ndarray:
    if not isinstance(text, str):
        raise UsageError(f"{where}: b64 must be a string")
    raw = _b64_lenient(text)
    return _from_raw(raw, tensor, shape, where, "b64 decodes to")


def _b64_lenient(text: str) -> bytes:
    """Decode as libb64 (perf_analyzer's) does: characters outside the alphabet are skipped."""
    kept = bytes(c for c in text.encode("ascii", "ignore") if c in _B64_ALPHABET)
    kept = kept[: len(kept) - len(kept) % 4] if len(kept) % 4 == 1 else kept
    return base64.b64decode(kept + b"=" * (-len(kept) % 4))


def _from_raw(raw: bytes, tensor: TensorInfo, shape: tuple[int, ...], where: str, what: str
              ) -> np.ndarray:
    """Raw batch-1 bytes (little-endian; BYTES with a 4-byte length before each element)."""
    dtype = tensor.numpy_dtype
    count = math.prod(shape)
    if dtype.kind != "O":
        need = count * dtype.itemsize
        if len(raw) != need:
            raise UsageError(f"{where}: {what} {len(raw)} bytes, the shape {list(shape)} of "
                             f"{tensor.datatype} needs {need}")
        return np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype)
    items, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise UsageError(f"{where}: {what} a truncated BYTES element length at byte "
                             f"{offset}")
        (length,) = struct.unpack_from("<I", raw, offset)
        if offset + 4 + length > len(raw):
            raise UsageError(f"{where}: {what} a BYTES element of {length} bytes at byte "
                             f"{offset}, past the end ({len(raw)} bytes)")
        items.append(raw[offset + 4: offset + 4 + length])
        offset += 4 + length
    if len(items) != count:
        raise UsageError(f"{where}: {what} {len(items)} BYTES elements, the shape "
                         f"{list(shape)} needs {count}")
    return np.array(items, dtype=object)


def _load_directory(path: Path, info: ModelInfo) -> Payload:
    """``--input-data DIR``: one batch-1 entry, a file per input named after it."""
    entry = {}
    for tensor in info.inputs:
        where = f"{path.name}/: entry 0, input {tensor.name!r}"
        if any(d < 0 for d in tensor.shape):
            raise UsageError(f"{where}: variable shape {list(tensor.shape)} cannot come from a "
                             "directory; use a JSON file with \"shape\"")
        file = path / tensor.name
        try:
            raw = file.read_bytes()
        except FileNotFoundError:
            raise UsageError(f"{where}: no file {file}") from None
        except OSError as exc:
            raise UsageError(f"{where}: cannot read {file}: {exc.strerror}") from None
        if not raw:
            raise UsageError(f"{where}: file {file} is empty")
        if tensor.numpy_dtype.kind == "O":
            lines = raw.decode("utf-8", errors="surrogateescape").split("\n")
            lines = lines[:-1] if lines[-1] == "" else lines  # getline: no last empty line
            count = math.prod(tensor.shape)
            if len(lines) != count:
                raise UsageError(f"{where}: file {file.name} has {len(lines)} lines, the shape "
                                 f"{list(tensor.shape)} needs {count} (one string a line)")
            array = np.array([ln.encode("utf-8", errors="surrogateescape") for ln in lines],
                             dtype=object).reshape(tensor.shape)
        else:
            array = _from_raw(raw, tensor, tensor.shape, where,
                              f"file {file.name} holds").reshape(tensor.shape)
        entry[tensor.name] = _with_batch(info, array)
    return Payload(info.name, (entry,), info.outputs, str(path), (1,), None)


def payload_document(payload: Payload, info: ModelInfo, b64: bool = False) -> dict[str, Any]:
    """A payload as perf_analyzer ``--input-data`` JSON (entries without the batch dim).

    Variable-shape inputs carry ``{"content", "shape"}``; ``b64`` stores tensors as
    little-endian raw bytes, far smaller for large images.
    """
    variable = {t.name for t in info.inputs if any(d < 0 for d in t.shape)}
    data = []
    for entry in payload.entries:
        document = {}
        for name, array in entry.items():
            item = array[0] if info.max_batch_size > 0 else array
            if b64 and item.dtype != object:
                value: Any = {"b64": base64.b64encode(
                    item.astype(item.dtype.newbyteorder("<")).tobytes()).decode()}
            elif item.dtype == object:
                value = [as_bytes(v).decode(errors="replace") for v in item.reshape(-1)]
            else:
                value = item.reshape(-1).tolist()
            if name in variable:
                value = {"content": value, "shape": list(item.shape)}
            document[name] = value
        data.append(document)
    return {"data": data}
