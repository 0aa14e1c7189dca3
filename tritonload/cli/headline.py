"""The bench's headline in the terminal: the tables the report opens with, from report.json.

The HTML, the Markdown and this printout render one list of sections
(`tritonload.analysis.report.answer_sections`), so the numbers a user sees first are the
same wherever they look.
"""

from __future__ import annotations

import json
from pathlib import Path

from tritonload.analysis.report import answer_sections


def headline_tables(report_json: Path) -> list[tuple[list[dict[str, str]], str]]:
    """``(rows, title)`` per answer section that has a table."""
    data = json.loads(Path(report_json).read_text())
    tables = []
    for sec in answer_sections(data):
        table = sec.get("table")
        if table and table[1]:
            headers, rows = table
            tables.append(([dict(zip(headers, row, strict=True)) for row in rows],
                           sec["title"]))
    return tables
