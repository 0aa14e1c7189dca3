"""The CLI's terminal output: one rich console and its tables."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping

from rich.console import Console
from rich.table import Table

# Piped output (CI logs, files) gets a wide fixed width instead of rich's 80 columns.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def print_table(rows: Iterable[Mapping[str, object]], title: str | None = None) -> None:
    """Print dict rows (same keys) as a table."""
    rows = list(rows)
    if not rows:
        return
    table = Table(title=title, title_justify="left")
    for key in rows[0]:
        table.add_column(str(key))
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    console.print(table)

