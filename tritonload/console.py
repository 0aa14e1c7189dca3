"""The CLI's terminal output: one rich console, tables, and the one-line error format."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from rich.console import Console
from rich.table import Table

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


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


def error_line(message: str) -> None:
    """The single line a user sees for a bad input or an unusable server."""
    err_console.print(f"tritonload: error: {message}", markup=False, soft_wrap=True)
