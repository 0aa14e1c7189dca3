"""Reports: three formats with the same numbers; the compare command's table."""

from __future__ import annotations

import base64
import html
import json
import re
import subprocess
import sys

import pytest
from tritonload.analysis import report
from tritonload.analysis.cli import main


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    from tritonload.analysis.synthetic import SyntheticModel as M
    from tritonload.analysis.synthetic import write_synthetic_run

    root = tmp_path_factory.mktemp("sweep")
    dirs = []
    n = 0
    for proto in ("grpc", "http"):
        for mode in ("sync", "async"):
            for users in (1, 4, 8):
                n += 1
                f = (1.0 if proto == "grpc" else 0.9) * (1.0 if mode == "sync" else 2.0)
                med = 4000 * (1 + max(0, users - 4) ** 2 * 0.5)
                models = [
                    M("dense", rate_rps=60 * min(users, 5) * f, latency_median_us=med,
                      error_rate=0.01, error_kinds=("timeout",), batch_sizes={1: 1, 4: 1}),
                    M("dense_nobatch", rate_rps=40 * min(users, 5) * f,
                      latency_median_us=med * 1.4),
                    M("image", rate_rps=20 * min(users, 5) * f, latency_median_us=med * 1.5,
                      bytes_sent=602112, bytes_received=4004),
                ]
                dirs.append(write_synthetic_run(
                    root / f"r{n}", models, protocol=proto, mode=mode, load_level=users,
                    duration_s=10, seed=n, run_id=f"20240101-0000{n:02d}-{n:06x}",
                    embedded=True))
    return dirs


def _md_tables(text: str) -> dict[str, list[list[str]]]:
    tables, section = {}, None
    for line in text.splitlines():
        if line.startswith("## "):
            section = line[3:].strip()
        elif line.startswith("|") and not line.startswith("|---"):
            cells = [c.strip().replace("\\|", "|") for c in line.strip()[1:-1].split(" | ")]
            tables.setdefault(section, []).append(cells)
    return tables


def _html_tables(text: str) -> dict[str, list[list[str]]]:
    tables = {}
    # Answer sections are <h2>s; the details follow, each a <details> with a <summary> title.
    pattern = r"<(h2|summary)>(.*?)</\1>(.*?)(?=<h2|<summary>|</body>)"
    for m in re.finditer(pattern, text, re.S):
        section = html.unescape(m.group(2))
        for t in re.findall(r"<table>(.*?)</table>", m.group(3), re.S):
            rows = []
            for tr in re.findall(r"<tr>(.*?)</tr>", t, re.S):
                cells = re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", tr, re.S)
                rows.append([html.unescape(c) for c in cells])
            tables[section] = rows
    return tables


def test_report_writes_three_consistent_formats(sweep, tmp_path):
    out = tmp_path / "report"
    code = main(["report", *map(str, sweep), "-o", str(out), "--slo-p95-ms", "12",
                 "--target-rps", "500", "--headroom", "0.25", "--bootstrap", "300"])
    assert code == 0
    data = json.loads((out / "report.json").read_text())
    md = (out / "report.md").read_text()
    page = (out / "report.html").read_text()

    # Every table has the same cells in Markdown and HTML.
    md_t, html_t = _md_tables(md), _html_tables(page)
    assert set(md_t) == set(html_t)
    for name in md_t:
        assert md_t[name] == html_t[name], name
    for name in ("Throughput and latency", "Capacity", "Sync vs async", "gRPC vs HTTP",
                 "Dynamic batching on vs off", "Where the time goes", "Runs"):
        assert len(md_t[name]) > 1, name

    # The tables show the JSON's numbers.
    rows = md_t["Throughput and latency"][1:]
    assert len(rows) == len(data["groups"])
    for g in data["groups"]:
        expected = [g["model"], g["protocol"], g["mode"],
                    report.fmt_load(g["load_kind"], g["load_level"]),
                    report.fmt_rps(g["throughput_rps"]),
                    report.fmt_ci(g["throughput_lo"], g["throughput_hi"]),
                    report.fmt_ms(g["p50_us"]), report.fmt_ms(g["p90_us"]),
                    report.fmt_ms(g["p95_us"])]
        assert any(r[: len(expected)] == expected for r in rows), expected
    cap = md_t["Capacity"]
    for lim, rep in zip(data["capacity"]["limits"], data["capacity"]["replicas"], strict=True):
        row = next(r for r in cap[1:] if r[:3] == [lim["model"], lim["protocol"], lim["mode"]])
        assert row[4] == report.fmt_rps(lim["max_rps"])
        if rep["replicas"] is not None:
            assert row[-2].lstrip("≤ ") == str(rep["replicas"])
            assert row[-1] == rep["arithmetic"]
            usable = lim["max_rps"] * 0.75
            assert rep["replicas"] == -(-round(500 / usable, 9) // 1)

    # The answer first, then the details (the summary first among them), in both formats.
    assert md.index("## What could not be trusted") < md.index("# Details")
    assert md.index("## Summary") < md.index("## Runs")
    assert page.index("<section id='answer'>") < page.index("<summary>Summary</summary>")
    assert page.index("<summary>Summary</summary>") < page.index("<summary>Runs</summary>")
    for line in data["headline"]:
        assert f"- {line}" in md
        assert html.escape(line) in page
    assert any("Published claim" in line for line in data["headline"])
    assert data["sync_vs_async"]["claim"]["verdict"] in ("not confirmed", "mixed")

    # Self-contained HTML: embedded PNGs, no external resources.
    images = re.findall(r"src='data:image/png;base64,([^']+)'", page)
    assert len(images) >= 4
    assert all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in images)
    assert "http://" not in page and "https://" not in page

    # JSON has every number: no NaN tokens, parameters recorded.
    assert "NaN" not in (out / "report.json").read_text()
    assert data["parameters"]["headroom"] == 0.25 and data["parameters"]["slo_p95_ms"] == 12


def test_report_without_slo_says_so(sweep, tmp_path):
    out = tmp_path / "r"
    assert main(["report", str(sweep[0]), "-o", str(out), "--bootstrap", "200"]) == 0
    data = json.loads((out / "report.json").read_text())
    assert data["capacity"]["limits"] == []
    assert any("No P95 SLO given" in line for line in data["headline"])
    assert "No sync/async pair" in (out / "report.md").read_text()


def test_compare_prints_markdown_and_flags_regressions(make_run, Model, capsys):
    a = make_run([Model("dense", rate_rps=150, latency_median_us=4000)], seed=1, duration_s=20)
    b = make_run([Model("dense", rate_rps=100, latency_median_us=6000)], seed=2, duration_s=20)
    proc = subprocess.run([sys.executable, "-m", "analysis.cli", "compare", str(a), str(b),
                           "--fail-on-regression"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    out = proc.stdout
    assert out.startswith("| model | protocol | mode | load | metric |")
    throughput = next(line for line in out.splitlines() if "ok req/s" in line)
    assert "**REGRESSION**" in throughput
    p95 = next(line for line in out.splitlines() if "P95 ms" in line)
    assert "**REGRESSION**" in p95
    assert "significant regression(s)" in out
    assert main(["compare", str(a), str(a), "--fail-on-regression"]) == 0
    same = capsys.readouterr().out
    assert "REGRESSION" not in same and "improvement**" not in same


def test_report_without_server_statistics_warns_and_still_writes(make_run, tmp_path):
    run = make_run()
    (run / "server_stats.parquet").unlink()
    (run / "server_batches.parquet").unlink()
    out = tmp_path / "r"
    assert main(["report", str(run), "-o", str(out), "--bootstrap", "200"]) == 0
    data = json.loads((out / "report.json").read_text())
    assert data["server"] == [] and data["time_breakdown"] == []
    assert any("server_stats.parquet is missing" in w for w in data["warnings"])
    assert any(line.startswith("Warning: ") for line in data["headline"])
    assert len(data["groups"]) == 1


def test_compare_matches_runs_at_different_load_levels(make_run, Model, capsys):
    a = make_run([Model("dense", rate_rps=100)], load_level=4, seed=5)
    b = make_run([Model("dense", rate_rps=100)], load_level=8, seed=6)
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "4/8" in out and "different load levels" in out
