"""The Locust web UI with tritonload, as a person uses it: Debian's headless Chromium.

One real session: Locust's web UI against the embedded server, a test started from the form
(async, 2 in flight, typed into tritonload's custom parameters), the Triton tab watched
until it shows numbers, its P95 checked against the run directory, the Statistics tab checked
for sub-millisecond digits, the test stopped, and the report followed from its link.

Screenshots land in ``reports/screenshots/`` (or ``$TRITONLOAD_SCREENSHOT_DIR``):
``webui-1-form.png`` (the start form with tritonload's parameters), ``webui-2-triton.png``
(the Triton tab, live), ``webui-3-triton-run.png`` (the run tab), ``webui-4-statistics.png``
(Locust's table with 3-digit percentiles) and ``webui-5-report.png`` (the rendered report).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import free_ports
from tests.locust_runs import REPO, records

CHROMIUM = shutil.which("chromium")
SCREENSHOT_DIR = Path(os.environ.get("TRITONLOAD_SCREENSHOT_DIR",
                                     REPO / "reports" / "screenshots"))

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"), reason="Debian's chromium is not installed")]


@pytest.fixture
def web_ui(tmp_path, target):
    """Locust's web UI on a free port, for mixed_models against the session's server."""
    port = free_ports(1, start=28089)[0]
    proc = subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", str(REPO / "locustfiles/mixed_models.py"),
         "--host", f"{target.host}:{target.http_port}", "--web-host", "127.0.0.1",
         "--web-port", str(port)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    yield f"http://127.0.0.1:{port}", tmp_path
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def _table(page) -> list[dict[str, str]]:
    """The visible table as rows of ``{column title: cell text}``."""
    heads = [h.inner_text().strip() for h in page.locator("table thead th").all()]
    rows = []
    for row in page.locator("table tbody tr").all():
        cells = [c.inner_text().strip() for c in row.locator("td").all()]
        rows.append(dict(zip(heads, cells, strict=False)))
    return rows


def test_triton_tab_from_start_form_to_report(web_ui):
    from playwright.sync_api import sync_playwright

    base, cwd = web_ui
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1600, "height": 900})
        deadline = time.monotonic() + 60
        while True:  # the UI comes up after the pre-flight
            try:
                page.goto(base)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

        # Start from the form: users, ramp-up, and tritonload's own parameters.
        page.locator("input[name=userCount]").fill("4")
        page.locator("input[name=spawnRate]").fill("4")
        page.get_by_role("button", name="Custom parameters").click()
        page.locator("input[name=mode]").fill("async")
        page.locator("input[name=maxInFlight]").fill("2")
        page.screenshot(path=str(SCREENSHOT_DIR / "webui-1-form.png"))
        page.get_by_role("button", name="Start").click()

        # The Triton tab, until it shows numbers for every model and protocol.
        page.get_by_role("tab", name="Triton", exact=True).click()
        deadline = time.monotonic() + 60
        rows: list[dict[str, str]] = []
        while time.monotonic() < deadline:
            rows = [r for r in _table(page) if re.fullmatch(r"\d+(\.\d+)?", r.get("P95 (ms)", ""))]
            if len(rows) == 8 and all(r["Queue (ms)"] for r in rows):
                break
            page.wait_for_timeout(500)
        assert len(rows) == 8, rows  # the 4 models of mixed_models.py × 2 protocols
        time.sleep(4.5)  # two more refreshes: a steadier P95 to compare
        read_ns = time.time_ns()
        rows = {(r["Model"], r["Protocol"]): r for r in _table(page)}
        page.screenshot(path=str(SCREENSHOT_DIR / "webui-2-triton.png"), full_page=True)
        mine = rows[("recommender", "grpc")]
        assert mine["Mode"] == "async" and mine["In flight/user"] == "2"  # the form's values
        assert re.fullmatch(r"\d+% → \d+%", mine["Mix: configured → achieved"])
        assert float(mine["Mean batch"]) >= 1 and "×" in mine["Batch sizes (last interval)"]
        tab_p95 = float(mine["P95 (ms)"])

        page.get_by_role("tab", name="Triton run").click()
        page.wait_for_timeout(2500)
        run_facts = {r["Item"]: r["Value"] for r in _table(page)}
        page.screenshot(path=str(SCREENSHOT_DIR / "webui-3-triton-run.png"))
        run_dir = cwd / run_facts["run directory"]
        assert "still going" in run_facts["report"]

        # Locust's own table: percentiles keep 3 significant digits now.
        page.get_by_role("tab", name="Statistics").click()
        page.wait_for_timeout(2500)
        stats = _table(page)
        page.screenshot(path=str(SCREENSHOT_DIR / "webui-4-statistics.png"))
        p95s = [r["95%ile (ms)"] for r in stats if r.get("Name") != "Aggregated"]
        assert any(re.fullmatch(r"\d+\.\d+", v) for v in p95s), p95s

        page.get_by_role("button", name="Stop").click()
        page.wait_for_timeout(3000)
        page.get_by_role("tab", name="Download Data").click()
        link = page.get_by_role("link", name="tritonload report of the last finished run")
        page.goto(base + link.get_attribute("href"))  # renders the report, then serves it
        assert page.title() == "tritonload capacity report"
        assert page.locator("text=recommender").count() > 0
        page.screenshot(path=str(SCREENSHOT_DIR / "webui-5-report.png"))
        browser.close()
    print(f"screenshots: {SCREENSHOT_DIR}")

    # The tab's P95 (HDR, since the start) is the run directory's, up to the refresh lag.
    rows = records(run_dir)
    done_ns = rows.start_ns + (rows.latency_us * 1000).astype("int64")
    ok = rows[(rows.model == "recommender") & (rows.protocol == "grpc") & rows.ok]
    before_read = ok[done_ns[ok.index] <= read_ns]
    expected = np.percentile(before_read.latency_us, 95) / 1000
    assert tab_p95 == pytest.approx(expected, rel=0.05)
