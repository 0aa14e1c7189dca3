"""``--validate``: an answer's outputs against the payload's ``validation_data``.

The comparison is exact, byte for byte, as perf_analyzer 2.41's is (seen on this machine: a
``validation_data`` off by 1.0 in one FP32 value stopped it with "Output doesn't match
expected output", exit 99; the exact value ran). A file that drives both tools then gets the
same verdict from both. Unlike perf_analyzer, a mismatch does not stop the run: it is a failed
request of its own kind (``output_mismatch``), counted and reported with the others.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from tritonload.core.errors import OutputMismatch
from tritonload.triton.payloads import as_bytes


def check_outputs(model: str, expected: Mapping[str, np.ndarray],
                  answer: Callable[[str], np.ndarray | None]) -> None:
    """Raise `OutputMismatch` unless every expected output is in the answer, exactly.

    ``answer(name)`` is the decoded output tensor (tritonclient's ``InferResult.as_numpy``),
    or None when the answer does not hold it.
    """
    for name, want in expected.items():
        got = answer(name)
        if got is None:
            raise OutputMismatch(f"{model}: the answer has no output {name!r}")
        if got.shape != want.shape:
            raise OutputMismatch(f"{model}: output {name!r} has shape {list(got.shape)}, "
                                 f"validation_data {list(want.shape)}")
        if want.dtype.kind != "O" and got.dtype != want.dtype:
            raise OutputMismatch(f"{model}: output {name!r} is {got.dtype}, validation_data "
                                 f"{want.dtype}")
        differs = _differing_elements(got, want)
        if differs:
            first = differs[0]
            raise OutputMismatch(
                f"{model}: output {name!r} differs from validation_data at element {first}: "
                f"got {got.reshape(-1)[first]!r}, expected {want.reshape(-1)[first]!r}")


def _differing_elements(got: np.ndarray, want: np.ndarray) -> list[int]:
    """Flat indices of the elements whose bytes differ (BYTES: whose strings differ)."""
    if want.dtype.kind == "O":
        return [i for i, (g, w) in enumerate(zip(got.reshape(-1), want.reshape(-1), strict=True))
                if as_bytes(g) != as_bytes(w)]
    if got.tobytes() == want.tobytes():
        return []
    rows = (want.size, want.itemsize)
    return np.flatnonzero((np.ascontiguousarray(got).reshape(-1).view(np.uint8).reshape(rows)
                           != np.ascontiguousarray(want).reshape(-1).view(np.uint8).reshape(rows)
                           ).any(axis=1)).tolist()
