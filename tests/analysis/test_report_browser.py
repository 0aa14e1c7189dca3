"""The HTML report as a person sees it: Debian's headless Chromium, driven by Playwright.

The module builds one real report from synthetic runs and hand-made capacity searches
(search.json documents in the format `tritonload.cli.capacity.Search.write` writes), opens
``report.html`` over ``file://``, saves screenshots (``reports/screenshots/`` at the repo root,
printed) and checks that the page logs no console error, fetches nothing, opens with the answer
(``<section id="answer">``) whose capacity block is entirely in the first viewport, that every
capacity and interval it shows there is the one in ``report.json`` (and in search.json), and
that everything else waits in closed ``<details>``.

Helpers for extending the checks (a new headline section, say):

- ``report.section("capacity", "Summary")``: the first of these keys found on the page, by
  element id, else by heading text; a :class:`Section` with its rendered ``text`` and ``box``.
- ``report.box_of(section, "159.1")``: where a piece of the section's text is drawn.
- ``shows(section.text, fmt_value)``: the text shows that formatted number as a whole number.

Playwright never downloads a browser here: it launches ``shutil.which("chromium")`` (.ci/run
installs Debian's package). Without chromium the module is skipped, except under CI.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from tritonload.analysis.metrics import ALL_MODELS

CHROMIUM = shutil.which("chromium")
VIEWPORT = {"width": 1280, "height": 800}
REPO = Path(__file__).resolve().parents[2]
SCREENSHOT_DIR = Path(os.environ.get("TRITONLOAD_SCREENSHOT_DIR",
                                     REPO / "reports" / "screenshots"))
# The page's first section, and the block of it that must be seen without scrolling.
FIRST_SECTION = "answer"
CAPACITY_BLOCK = "capacity"
#: P95 SLO of the report and of the hand-made searches.
SLO_MS = 12.0

pytestmark = pytest.mark.browser


@dataclass(frozen=True)
class Box:
    """A rectangle in page coordinates (CSS px from the top left of the document)."""

    top: float
    left: float
    width: float
    height: float

    @property
    def bottom(self) -> float:
        return self.top + self.height

    def in_first_viewport(self, height: int = VIEWPORT["height"]) -> bool:
        """Entirely visible before any scrolling."""
        return self.height > 0 and self.top >= 0 and self.bottom <= height


@dataclass(frozen=True)
class Section:
    """One section of the page as rendered."""

    key: str        # the id or heading text that found it
    heading: str    # its heading's text ("" when none)
    text: str       # innerText of the heading and everything up to the next heading
    box: Box        # union of the boxes of those elements


# Finds a section by element id, else by the text of a heading (h1-h6, case and whitespace
# ignored); a heading's section runs up to the next heading of the same or a higher level.
_SECTION_JS = """
(key) => {
  const norm = s => s.replace(/\\s+/g, ' ').trim().toLowerCase();
  let els, heading = null;
  const byId = document.getElementById(key);
  if (byId) {
    els = [byId];
    heading = /^H[1-6]$/.test(byId.tagName) ? byId : byId.querySelector('h1,h2,h3,h4,h5,h6');
    if (heading === byId) {
      for (let n = byId.nextElementSibling; n && !/^H[1-6]$/.test(n.tagName);
           n = n.nextElementSibling) els.push(n);
    }
  } else {
    heading = [...document.querySelectorAll('h1,h2,h3,h4,h5,h6')]
      .find(h => norm(h.textContent) === norm(key));
    if (!heading) return null;
    const level = +heading.tagName[1];
    els = [heading];
    for (let n = heading.nextElementSibling; n; n = n.nextElementSibling) {
      if (/^H[1-6]$/.test(n.tagName) && +n.tagName[1] <= level) break;
      els.push(n);
    }
  }
  els = els.filter(e => !['SCRIPT', 'STYLE', 'TEMPLATE'].includes(e.tagName));
  const rects = els.map(e => e.getBoundingClientRect()).filter(r => r.width || r.height);
  const min = k => Math.min(...rects.map(r => r[k])), max = k => Math.max(...rects.map(r => r[k]));
  const top = min('top'), left = min('left'), bottom = max('bottom'), right = max('right');
  window.__sections = window.__sections || {};
  window.__sections[key] = els;
  return {heading: heading ? heading.innerText.trim() : '',
          text: els.map(e => e.innerText).join('\\n'),
          box: {top: top + scrollY, left: left + scrollX, width: right - left,
                height: bottom - top}};
}
"""

# The box of the first occurrence of ``needle`` inside a section found by _SECTION_JS.
_TEXT_BOX_JS = """
([key, needle]) => {
  for (const el of window.__sections[key]) {
    const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      const at = node.data.indexOf(needle);
      if (at < 0) continue;
      const range = document.createRange();
      range.setStart(node, at);
      range.setEnd(node, at + needle.length);
      const r = range.getBoundingClientRect();
      return {top: r.top + scrollY, left: r.left + scrollX, width: r.width, height: r.height};
    }
  }
  return null;
}
"""


class RenderedReport:
    """``report.html`` open in headless Chromium, with what loading it logged."""

    def __init__(self, page, data: dict, html_path: Path, screenshots: dict[str, Path],
                 console_errors: list[str], external_requests: list[str]) -> None:
        self.page = page
        self.data = data                        # report.json
        self.html_path = html_path
        self.screenshots = screenshots          # {"full": path, "viewport": path}
        self.console_errors = console_errors    # console.error messages and uncaught errors
        self.external_requests = external_requests  # any URL but file: and data: (blocked)

    def section(self, *keys: str) -> Section:
        """The first of ``keys`` found: an element id, else a heading's text."""
        for key in keys:
            found = self.page.evaluate(_SECTION_JS, key)
            if found is not None:
                return Section(key, found["heading"], found["text"], Box(**found["box"]))
        headings = self.page.eval_on_selector_all(
            "h1,h2,h3,h4,h5,h6,[id]", "els => els.map(e => e.id || e.innerText)")
        raise AssertionError(f"no section {keys} on the page; ids and headings: {headings}")

    def box_of(self, section: Section, needle: str) -> Box:
        """Where ``needle`` (within one text node of ``section``) is drawn."""
        found = self.page.evaluate(_TEXT_BOX_JS, [section.key, needle])
        assert found is not None, f"{needle!r} is not drawn in section {section.key!r}"
        return Box(**found)


def shows(text: str, value: str) -> bool:
    """``text`` shows ``value`` as a whole number (``"61.8"`` is not in ``"161.85"``)."""
    return re.search(rf"(?<!\d)(?<!\d[.,]){re.escape(value)}(?!\d|[.,]\d)", text) is not None


def _synthetic_runs(root: Path) -> list[Path]:
    """A concurrency sweep of two models whose P95 crosses 12 ms between 2 and 4 in flight."""
    from tritonload.analysis.synthetic import SyntheticModel as M
    from tritonload.analysis.synthetic import write_synthetic_run

    dirs = []
    for n, users in enumerate((1, 2, 4, 8), 1):
        median = 4000 * (1 + max(0, users - 2) ** 2 * 0.25)
        models = [M("dense", rate_rps=80 * min(users, 4), latency_median_us=median),
                  M("image", rate_rps=30 * min(users, 4), latency_median_us=median * 1.5,
                    bytes_sent=602112, bytes_received=4004)]
        dirs.append(write_synthetic_run(
            root / f"r{n}", models, load_level=users, duration_s=10, seed=n,
            run_id=f"20240101-0000{n:02d}-{n:06x}"))
    return dirs


#: Hand-made searches: (model, base model, batching, [(offered req/s, P95 ms), ...]); each
#: ends on a pass and a failure within ±5% of each other, so its knee is "found".
SEARCHES = [
    ("dense", "dense", "on", [(100, 4.1), (400, 5.0), (1600, 48.0), (1000, 10.2),
                              (1060, 13.1)]),
    ("dense_nobatch", "dense", "off", [(100, 6.0), (400, 31.0), (250, 10.5), (268, 13.4)]),
    ("image", "image", "on", [(100, 8.2), (400, 52.0), (200, 11.1), (212, 12.9)]),
]


def _capacity_searches(root: Path) -> Path:
    """search.json documents, as `tritonload.cli.capacity.Search.write` writes them."""
    from tritonload.core.knee import Probe, SearchLimits, knee

    limits = SearchLimits(slo_p95_us=SLO_MS * 1000.0)
    for model, base, batching, points in SEARCHES:
        probes = [Probe(offered_rps=float(rate), throughput_rps=rate * 0.99,
                        requests=int(rate * 2), p95_us=p95 * 1000.0,
                        p95_lo_us=p95 * 1000.0 * 0.93, p95_hi_us=p95 * 1000.0 * 1.08,
                        error_rate=0.0, goodput=0.99 if p95 <= SLO_MS else 0.7)
                  for rate, p95 in points]
        k = knee(probes, limits)
        assert k.status == "found", k.explanation  # the fixture's own premise
        label = f"{model}-grpc"
        document = {"format": "tritonload-capacity-search", "version": 1, "label": label,
                    "model": model, "protocol": "grpc",
                    "tags": {"base_model": base, "batching": batching, "config": "current"},
                    "limits": vars(limits), "knee": k.as_dict()}
        (root / label).mkdir(parents=True)
        (root / label / "search.json").write_text(json.dumps(document, indent=1))
    return root


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> RenderedReport:
    """A real report of synthetic runs, open in headless Chromium, screenshots saved."""
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("no `chromium` on PATH under CI: .ci/run installs Debian's chromium")
        pytest.skip("no `chromium` on PATH: `apt-get install --no-install-recommends chromium`")
    from playwright.sync_api import sync_playwright
    from tritonload.analysis.cli import write_report_for

    root = tmp_path_factory.mktemp("browser_report")
    capacity_dir = _capacity_searches(root / "capacity")
    _, paths = write_report_for(_synthetic_runs(root), root / "report", n_boot=200, seed=0,
                                capacity_dir=capacity_dir, slo_p95_ms=SLO_MS, target_rps=500,
                                headroom=0.25)
    data = json.loads(paths["json"].read_text())
    data["_searches"] = {p.parent.name: json.loads(p.read_text())
                         for p in capacity_dir.glob("*/search.json")}
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    shots = {"full": SCREENSHOT_DIR / "report-headline.png",
             "viewport": SCREENSHOT_DIR / "report-first-viewport.png",
             "capacity": SCREENSHOT_DIR / "report-capacity-block.png"}

    errors: list[str] = []
    external: list[str] = []

    def block(route) -> None:
        url = route.request.url
        if url.startswith(("file:", "data:")):
            route.continue_()
        else:
            external.append(url)
            route.abort()

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page(viewport=VIEWPORT, device_scale_factor=1)
            page.set_default_timeout(10_000)
            page.on("console", lambda m: m.type == "error" and errors.append(m.text))
            page.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
            page.route("**/*", block)
            page.goto(paths["html"].resolve().as_uri(), wait_until="load")
            page.screenshot(path=shots["full"], full_page=True)
            page.screenshot(path=shots["viewport"])
            page.locator(f"#{CAPACITY_BLOCK}").screenshot(path=shots["capacity"])
            print("report screenshots: " + ", ".join(f"{p} ({k})" for k, p in shots.items()))
            yield RenderedReport(page, data, paths["html"], shots, errors, external)
        finally:
            browser.close()


def test_page_loads_cleanly(report):
    assert report.console_errors == []
    assert report.external_requests == [], "the report must be self-contained"
    assert report.screenshots["full"].stat().st_size > 10_000
    assert report.page.title()


def test_the_page_opens_with_the_answer(report):
    first = report.page.evaluate(
        "() => { const e = document.querySelector('section[id], h2, details');"
        " return e && (e.id || e.tagName); }")
    assert first == FIRST_SECTION, f"{first!r} comes before the answer"
    blocks = report.page.eval_on_selector_all(
        f"#{FIRST_SECTION} > .block", "els => els.map(e => e.id)")
    assert blocks[0] == CAPACITY_BLOCK and "validity" in blocks, blocks


def test_capacity_block_is_in_the_first_viewport(report):
    block = report.section(CAPACITY_BLOCK)
    assert block.heading == f"Capacity within P95 ≤ {SLO_MS:g} ms"
    assert block.box.in_first_viewport(), (
        f"the capacity block at {block.box} is not all within the first "
        f"{VIEWPORT['height']} px; see {report.screenshots['viewport']}")


def test_capacity_block_shows_the_json_numbers(report):
    block = report.section(CAPACITY_BLOCK)
    models = report.data["answer"]["models"]
    assert [(m["model"], m["protocol"]) for m in models] == [("dense", "grpc"),
                                                            ("image", "grpc")]
    rows = report.page.eval_on_selector_all(
        f"#{CAPACITY_BLOCK} table tbody tr",
        "trs => trs.map(tr => [...tr.cells].map(td => td.innerText.trim()))")
    shown = {row[0]: row for row in rows}
    for m in models:
        cap = m["capacity"]
        value = f"{cap['capacity_rps']:.0f}"
        interval = f"{cap['capacity_lo_rps']:.0f}–{cap['capacity_hi_rps']:.0f}"
        assert shows(block.text, value), (m["model"], value, block.text)
        assert shows(block.text, interval), (m["model"], interval, block.text)
        assert shown[m["model"]][3:5] == [value, interval], (m["model"], shown[m["model"]])
        for text in (value, interval):
            assert report.box_of(block, text).in_first_viewport(), (m["model"], text)
        # report.json's numbers are the search's own, not re-derived.
        k = report.data["_searches"][cap["label"]]["knee"]
        assert (cap["capacity_rps"], cap["capacity_lo_rps"], cap["capacity_hi_rps"]) == (
            k["capacity_rps"], k["capacity_lo_rps"], k["capacity_hi_rps"])
        assert cap["capacity_lo_rps"] <= cap["capacity_rps"] <= cap["capacity_hi_rps"]
    dense = next(m for m in models if m["model"] == "dense")
    off = dense["batching_off"]
    assert off["label"] == "dense_nobatch-grpc"
    assert shown["dense"][7] == f"{off['capacity_rps']:.0f}"
    assert shown["dense"][8].startswith(f"{dense['batching_gain']['ratio']:.2f}×")
    # Replicas for 500 req/s: the count in the row, the arithmetic under the table.
    for m in models:
        assert shown[m["model"]][-1] == str(m["replicas"]["replicas"])
        assert m["replicas"]["arithmetic"] in block.text


def test_everything_else_is_in_closed_details(report):
    details = report.page.eval_on_selector_all(
        "details", "els => els.map(d => [d.querySelector('summary').innerText.trim(), d.open,"
        " !!d.closest('#answer')])")
    titles = [t for t, _, _ in details]
    assert titles[0] == "Summary" and {"Runs", "Capacity", "Method"} <= set(titles), titles
    assert [t for t, is_open, _ in details if is_open] == [], "details start closed"
    assert not any(inside for _, _, inside in details), "no details inside the answer"
    # Outside the answer, nothing but the "Details" heading and the closed <details>.
    loose = report.page.evaluate(
        "() => [...document.body.children].filter(e => !['H1', 'P', 'SECTION', 'H2',"
        " 'DETAILS'].includes(e.tagName) || (e.tagName === 'H2' && e.innerText !== 'Details'))"
        ".map(e => e.tagName + ' ' + e.innerText.slice(0, 40))")
    assert loose == []
    # A closed section's table is not drawn.
    runs = report.page.locator("details", has_text="Runs").first.locator("table")
    assert not runs.is_visible()


def test_summary_details_show_the_json_numbers(report):
    """Opened, the old headline (now the first of the details) still shows report.json's
    request count and each model's limit from the load ladder."""
    details = report.page.locator("details", has=report.page.locator("summary", has_text="Summary"))
    details.locator("summary").click()
    try:
        text = details.inner_text()
        data = report.data
        requests = sum(g["requests"] for g in data["groups"] if g["model"] != ALL_MODELS)
        assert shows(text, f"{requests:,}"), (f"{requests:,}", text)
        limits = [lim for lim in data["capacity"]["limits"] if lim["max_rps"] is not None]
        assert {lim["model"] for lim in limits} >= {"dense", "image"}
        for lim in limits:
            assert shows(text, f"{lim['max_rps']:.1f}"), (lim["model"], text)
    finally:
        details.locator("summary").click()
    assert details.evaluate("d => d.open") is False


def test_shows_matches_whole_numbers_only():
    assert shows("Capacity of image: grpc/sync 61.8 req/s", "61.8")
    assert shows("10,884 requests", "10,884")
    assert shows("dense grpc 1041 1023–1052", "1023–1052")
    assert not shows("161.85 req/s", "61.8")
    assert not shows("61.85 req/s", "61.8")
    assert not shows("10,884 requests", "884")
