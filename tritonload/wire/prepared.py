"""What a transport sends: one request, built once before the load starts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Prepared:
    """One prebuilt request: the bytes (or message) the transport sends, and its size.

    ``expected`` holds the outputs the answer must carry under ``--validate`` (the payload's
    ``validation_data`` for this entry); None when the answer is only counted. ``tokens_in``:
    a generation's prompt length (`tritonload.load.llm`).
    """

    model: str
    request: Any
    bytes_sent: int
    expected: Mapping[str, np.ndarray] | None = None
    tokens_in: int | None = None
