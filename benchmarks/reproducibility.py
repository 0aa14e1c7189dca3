"""Reproducibility of `tritonload bench --demo`: run it twice, do the answers agree?

A headline is only worth reading if running the same bench again on the same machine gives the
same verdict, and a 95% interval is only honest if a second measurement tends to land inside
it. This script measures both (issue 10): it runs ``tritonload bench --demo -o OUT/run1
--force``, then the same with ``-o OUT/run2``, one after the other (the venv's tritonload, each
run's output in OUT/runN.log; arguments after ``--`` go to both runs, e.g. ports), or with
``--reuse DIR1 DIR2`` reads two existing bench output directories without running anything.

It then compares every headline comparison of the two ``report.json`` ``answer`` blocks:

* per model and protocol: the capacity (its search status as the verdict), the batching gain
  (on ÷ off), the recommended config's change (after ÷ before), the recommended config itself
  (max_queue_delay_us and preferred_batch_sizes), reported apart: a fitted setting moves a
  little between runs (18 vs 16 in one pair), and it is not a verdict;
* sync vs async per framing, protocol and model: the throughput ratio and the P95 ratio;

and prints, for each, both runs' values, 95% intervals and verdicts, whether the verdicts
agree and whether run 2's value lies inside run 1's interval; then the shares. A comparison
missing in one run counts as a disagreement (and not inside).

    python benchmarks/reproducibility.py [-o OUT] [-- BENCH ARGS...]
    python benchmarks/reproducibility.py --reuse DIR1 DIR2

Target: every verdict agrees and every run-2 value lies inside run 1's interval; issue 10's
acceptance bar is >= 90% of verdicts agreeing. Exits 0 after printing (a measurement, not a
test), 2 with one line on bad input (a missing directory, no report.json, a failed bench).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

VERDICT_BAR = 0.9  # issue 10: at least 90% of the verdicts agree

INTERVAL = "interval"  # a value with a 95% interval and a verdict
CONFIG = "config"  # a recommended config: compared apart, not a verdict (see `agreement`)
#: Two recommended configs are "close" when both knobs differ by at most this share.
CONFIG_CLOSE = 0.15
ALL_MODELS = "(all models)"  # analysis.metrics.ALL_MODELS: sync/async on the whole mix


class BadInput(Exception):
    """Something this script cannot measure; its message is the one line printed."""


@dataclass(frozen=True)
class Comparison:
    """One headline comparison of one run: a stable key, its value, interval and verdict."""

    key: str
    kind: str = INTERVAL
    value: float | None = None
    lo: float | None = None
    hi: float | None = None
    verdict: str | None = None
    fmt: str = ".2f"  # how to print value and interval


@dataclass(frozen=True)
class Row:
    """One comparison in both runs (``None`` where a run lacks it)."""

    key: str
    one: Comparison | None
    two: Comparison | None
    agree: bool
    inside: bool | None  # None: not an interval, or run 1 has no interval to test
    overlap: bool | None  # do the two runs' intervals overlap (None: cannot tell)


@dataclass
class Agreement:
    """Every row and the shares: verdicts that agree, run-2 values inside run-1 intervals."""

    rows: list[Row] = field(default_factory=list)
    agree: int = 0
    agree_total: int = 0
    inside: int = 0
    inside_total: int = 0
    overlap: int = 0
    overlap_total: int = 0
    configs_same: int = 0
    configs_close: int = 0
    configs_total: int = 0

    @property
    def missing(self) -> list[Row]:
        """Rows present in one run only."""
        return [r for r in self.rows if r.one is None or r.two is None]

    def meets_target(self) -> bool:
        """Every verdict agrees and every run-2 value lies inside run 1's interval."""
        return (self.agree_total > 0 and self.agree == self.agree_total
                and self.inside == self.inside_total)

    def meets_bar(self) -> bool:
        """Issue 10's acceptance bar: at least 90% of the verdicts agree."""
        return self.agree_total > 0 and self.agree >= VERDICT_BAR * self.agree_total


def _num(x: object) -> float | None:
    if isinstance(x, bool):
        return None
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _verdict(x: object) -> str | None:
    return None if x is None else str(x)


def _config_text(config: dict | None) -> str | None:
    if not isinstance(config, dict):
        return None
    delay = _num(config.get("max_queue_delay_us"))
    sizes = config.get("preferred_batch_sizes") or []
    sizes_text = ",".join(str(int(s)) for s in sizes if _num(s) is not None)
    return (f"delay {'-' if delay is None else format(delay, 'g')} µs, "
            f"preferred [{sizes_text}]")


def _ratio(key: str, block: dict | None) -> Comparison | None:
    if not isinstance(block, dict):
        return None
    return Comparison(key, INTERVAL, _num(block.get("ratio")), _num(block.get("lo")),
                      _num(block.get("hi")), _verdict(block.get("verdict")))


def comparisons(answer: dict) -> list[Comparison]:
    """Every headline comparison of a report.json ``answer`` block, keyed stably.

    A block that is null in ``answer`` (no batching-off twin, no recommendation) gives no
    comparison; numbers that are null stay None.
    """
    out: list[Comparison] = []
    for m in answer.get("models") or []:
        where = f"{m.get('model')}/{m.get('protocol')}"
        cap = m.get("capacity")
        if isinstance(cap, dict):
            out.append(Comparison(f"capacity {where}", INTERVAL, _num(cap.get("capacity_rps")),
                                  _num(cap.get("capacity_lo_rps")),
                                  _num(cap.get("capacity_hi_rps")),
                                  _verdict(cap.get("status")), ".0f"))
        gain = _ratio(f"batching gain {where}", m.get("batching_gain"))
        if gain is not None:
            out.append(gain)
        rec = m.get("recommended")
        if isinstance(rec, dict):
            change = _ratio(f"recommended change {where}", rec.get("change"))
            if change is not None:
                out.append(change)
            if isinstance(rec.get("config"), dict):
                sizes = rec["config"].get("preferred_batch_sizes") or []
                out.append(Comparison(f"recommended config {where}", CONFIG,
                                      value=_num(rec["config"].get("max_queue_delay_us")),
                                      lo=_num(sizes[0]) if sizes else None,
                                      verdict=_config_text(rec["config"])))
    for s in answer.get("sync_async") or []:
        level = _num(s.get("in_flight_sync"))
        model = s.get("model")
        where = (f"{s.get('framing')} {s.get('protocol')}"
                 + (f" {model}" if model and model != ALL_MODELS else "")
                 + (f" @{level:g}" if level is not None else ""))
        out.append(Comparison(f"sync/async throughput {where}", INTERVAL,
                              _num(s.get("throughput_ratio")), _num(s.get("throughput_lo")),
                              _num(s.get("throughput_hi")),
                              _verdict(s.get("throughput_verdict"))))
        out.append(Comparison(f"sync/async p95 {where}", INTERVAL, _num(s.get("p95_ratio")),
                              _num(s.get("p95_lo")), _num(s.get("p95_hi")),
                              _verdict(s.get("p95_verdict"))))
    seen: dict[str, int] = {}
    unique = []
    for c in out:  # keys must be unique to pair runs; a repeat (never expected) gets #n
        seen[c.key] = seen.get(c.key, 0) + 1
        unique.append(c if seen[c.key] == 1 else
                      Comparison(f"{c.key} #{seen[c.key]}", c.kind, c.value, c.lo, c.hi,
                                 c.verdict, c.fmt))
    return unique


def _bounds(c: Comparison) -> tuple[float, float] | None:
    """The interval as (lo, hi); a missing end is open (one-sided); None when there is none."""
    if c.lo is None and c.hi is None:
        return None
    return (-math.inf if c.lo is None else c.lo, math.inf if c.hi is None else c.hi)


def _inside(one: Comparison, two: Comparison) -> bool | None:
    bounds = _bounds(one)
    if bounds is None:
        return None
    return two.value is not None and bounds[0] <= two.value <= bounds[1]


def _overlap(one: Comparison, two: Comparison) -> bool | None:
    a, b = _bounds(one), _bounds(two)
    if a is None or b is None:
        return None
    return a[0] <= b[1] and b[0] <= a[1]


def agreement(run1: dict, run2: dict) -> Agreement:
    """Pair the two runs' comparisons by key; count the verdicts that agree and the inside."""
    one = {c.key: c for c in comparisons(run1)}
    two = {c.key: c for c in comparisons(run2)}
    keys = list(one) + [k for k in two if k not in one]
    result = Agreement()
    for key in keys:
        a, b = one.get(key), two.get(key)
        kind = (a or b).kind
        if a is None or b is None:
            row = Row(key, a, b, False, False if kind == INTERVAL else None,
                      False if kind == INTERVAL else None)
        elif kind == INTERVAL:
            row = Row(key, a, b, a.verdict == b.verdict, _inside(a, b), _overlap(a, b))
        else:
            row = Row(key, a, b, a.verdict == b.verdict, None, None)
        result.rows.append(row)
        if kind == CONFIG:  # a fitted setting, not a verdict: counted on its own
            result.configs_total += 1
            result.configs_same += row.agree
            result.configs_close += bool(a and b and _close(a, b))
            continue
        result.agree_total += 1
        result.agree += row.agree
        if row.inside is not None:
            result.inside_total += 1
            result.inside += row.inside
        if row.overlap is not None:
            result.overlap_total += 1
            result.overlap += row.overlap
    return result


def _close(a: Comparison, b: Comparison) -> bool:
    """Delay and preferred batch size each within `CONFIG_CLOSE` of run 1's."""
    def near(x: float | None, y: float | None) -> bool:
        if x is None or y is None:
            return x is y
        return abs(x - y) <= CONFIG_CLOSE * max(abs(x), abs(y), 1e-9)
    return near(a.value, b.value) and near(a.lo, b.lo)


def share(count: int, total: int) -> str:
    """``count/total (pct%)``, or ``0/0 (n/a)``."""
    return f"{count}/{total} ({count / total:.0%})" if total else f"{count}/{total} (n/a)"


def _end(x: float | None, fmt: str, missing: str) -> str:
    return missing if x is None else format(x, fmt)


def describe(c: Comparison | None) -> str:
    """``value [lo, hi] verdict`` of one run's comparison (``missing`` when absent)."""
    if c is None:
        return "missing"
    if c.kind == CONFIG:
        return c.verdict or "-"
    value = _end(c.value, c.fmt, "-")
    if c.lo is None and c.hi is None:
        interval = "[no interval]"
    else:
        interval = (("[" if c.lo is not None else "(") + _end(c.lo, c.fmt, "-inf") + ", "
                    + _end(c.hi, c.fmt, "inf") + ("]" if c.hi is not None else ")"))
    return f"{value} {interval} {c.verdict or '-'}"


def _yes(x: bool | None) -> str:
    return "-" if x is None else ("yes" if x else "NO")


def print_report(result: Agreement, sources: tuple[str, str]) -> None:
    """The table, the missing comparisons, the shares and the target."""
    table = [(r.key, describe(r.one), describe(r.two), _yes(r.agree), _yes(r.inside),
              _yes(r.overlap)) for r in result.rows]
    head = ("comparison", "run 1", "run 2", "agree", "inside", "overlap")
    widths = [max(len(head[i]), *(len(t[i]) for t in table)) for i in range(len(head))]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print()
    print(f"run 1: {sources[0]}")
    print(f"run 2: {sources[1]}")
    print("each run: value [95% interval] verdict (capacity in req/s, its verdict the search's")
    print("status; ratios with improvement / regression / not significant). agree: same verdict")
    print("(config: same config); inside: run 2's value within run 1's interval; overlap: the two")
    print("intervals overlap; - = not applicable.")
    print(line.format(*head))
    print("-" * (sum(widths) + 2 * (len(widths) - 1)))
    for t in table:
        print(line.format(*t).rstrip())
    for r in result.missing:
        print(f"missing in run {2 if r.two is None else 1}: {r.key} (counted as disagreeing)")
    print()
    print(f"verdicts agree: {share(result.agree, result.agree_total)}; run-2 values inside "
          f"run-1 intervals: {share(result.inside, result.inside_total)}")
    print(f"intervals overlap: {share(result.overlap, result.overlap_total)}")
    if result.configs_total:
        print(f"recommended configs (fitted settings, not verdicts; not in the shares above): "
              f"identical {share(result.configs_same, result.configs_total)}, both knobs "
              f"within ±{CONFIG_CLOSE:.0%} {share(result.configs_close, result.configs_total)}")
    print("(for scale: with equal normal noise in both runs and honest intervals, a second value")
    print(" lands inside the first's 95% interval ~83% of the time; the intervals overlap ~99%)")
    print(f"target (every verdict agrees, every run-2 value inside run 1's interval): "
          f"{'met' if result.meets_target() else 'NOT met'}")
    print(f"issue 10's bar (>= {VERDICT_BAR:.0%} of verdicts agree): "
          f"{'met' if result.meets_bar() else 'NOT met'}")


def load_answer(directory: Path) -> tuple[dict, str]:
    """A bench output directory's ``answer`` block and a one-line description of the run."""
    if not directory.is_dir():
        raise BadInput(f"{directory}: no such directory")
    path = directory / "report.json"
    if not path.is_file():
        raise BadInput(f"{directory}: no report.json (did the bench finish?)")
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BadInput(f"{path}: unreadable: {exc}") from None
    answer = report.get("answer") if isinstance(report, dict) else None
    if not isinstance(answer, dict):
        raise BadInput(f"{path}: no `answer` block (written by an older tritonload?)")
    return answer, f"{directory} (report generated {report.get('generated_at', '?')})"


def _last_line(log: Path) -> str:
    try:
        lines = [s.strip() for s in log.read_text(errors="replace").splitlines() if s.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def run_bench(n: int, out: Path, extra: list[str]) -> Path:
    """``tritonload bench --demo -o OUT/run<n> --force [extra]``; its output in OUT/run<n>.log."""
    run_dir, log_path = out / f"run{n}", out / f"run{n}.log"
    cmd = [sys.executable, "-m", "tritonload.cli", "bench", "--demo", "-o", str(run_dir),
           "--force", *extra]
    print(f"run {n}/2: tritonload {' '.join(cmd[3:])}  (log {log_path})", flush=True)
    began = time.monotonic()
    with open(log_path, "w") as log:
        code = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL).returncode
    if code != 0:
        last = _last_line(log_path)
        raise BadInput(f"run {n}: tritonload bench exited {code}"
                       + (f": {last}" if last else "") + f" (log {log_path})")
    print(f"run {n}/2 done in {(time.monotonic() - began) / 60:.1f} min", flush=True)
    return run_dir


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        usage="%(prog)s [-o OUT] [-- BENCH ARGS...] | %(prog)s --reuse DIR1 DIR2",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="arguments after -- go to both `tritonload bench --demo` runs, e.g.\n"
        "  -- --http-port 18800 --grpc-port 18801 --metrics-port 18802\n\n"
        "target: every verdict agrees and every run-2 value lies inside run 1's 95% interval;\n"
        "issue 10's bar: >= 90% of verdicts agree. Exit 0 after printing, 2 on bad input.")
    parser.add_argument("-o", "--output", type=Path, default=None, metavar="OUT",
                        help="where the two runs go: OUT/run1, OUT/run2 and their logs "
                        "(default reports/reproducibility-<time>)")
    parser.add_argument("--reuse", nargs=2, type=Path, metavar=("DIR1", "DIR2"),
                        help="compare two existing bench output directories; run nothing")
    args = parser.parse_args(argv)
    if args.reuse and (extra or args.output):
        parser.error("--reuse runs nothing: it takes no -o and no bench arguments")
    try:
        if args.reuse:
            dirs = list(args.reuse)
        else:
            out = (args.output or ROOT / "reports" /
                   f"reproducibility-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
            out.mkdir(parents=True, exist_ok=True)
            began = time.monotonic()
            dirs = [run_bench(n, out, extra) for n in (1, 2)]
            print(f"both runs in {(time.monotonic() - began) / 60:.1f} min", flush=True)
        (one, src1), (two, src2) = load_answer(dirs[0]), load_answer(dirs[1])
        result = agreement(one, two)
        if not result.rows:
            raise BadInput("no headline comparisons in either report.json `answer`")
    except BadInput as exc:
        print(f"reproducibility: error: {exc}", file=sys.stderr)
        return 2
    print_report(result, (src1, src2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
