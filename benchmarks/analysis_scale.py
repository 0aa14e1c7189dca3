"""Scale benchmark of the analysis package: 10 million request records.

Generates (in a child process, so its memory does not count) a synthetic run directory of
``--records`` request records, then times, in this process: loading, the metrics and
comparisons, and writing the three report formats. Prints elapsed seconds per phase and the
peak resident memory of this process (``resource.getrusage(RUSAGE_SELF).ru_maxrss``).

    python benchmarks/analysis_scale.py [--records 10000000] [--dir /tmp/tl-scale] [--keep]

Targets (issue 4): under 60 s and under 4 GB peak memory.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET_S = 60.0
TARGET_BYTES = 4 * 1024**3


def generate(run_dir: Path, records: int) -> None:
    from tritonload.analysis.synthetic import SyntheticModel, write_synthetic_run

    duration = 600.0
    total_rate = records / duration
    models = [
        SyntheticModel("dense", rate_rps=total_rate * 0.5, latency_median_us=3000,
                       latency_sigma=0.4, error_rate=0.002, error_kinds=("timeout",),
                       batch_sizes={1: 1, 2: 2, 4: 3, 8: 1}),
        SyntheticModel("dense_nobatch", rate_rps=total_rate * 0.2, latency_median_us=4000,
                       latency_sigma=0.4),
        SyntheticModel("image", rate_rps=total_rate * 0.3, latency_median_us=9000,
                       latency_sigma=0.5, bytes_sent=602112, bytes_received=4004,
                       error_rate=0.001, error_kinds=("unavailable", "timeout")),
    ]
    write_synthetic_run(run_dir, models, duration_s=duration, seed=1, load_level=64,
                        mode="async", chunk_rows=500_000)


def peak_rss_bytes() -> int:
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000_000)
    parser.add_argument("--dir", type=Path, default=None, help="where to put the run dir")
    parser.add_argument("--keep", action="store_true", help="keep the generated run")
    parser.add_argument("--generate-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    base = args.dir or Path(tempfile.mkdtemp(prefix="tl-scale-"))
    run_dir = base / "run"
    out_dir = base / "report"
    if args.generate_only:
        generate(run_dir, args.records)
        return 0

    if not (run_dir / "run.json").exists():
        t = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--records", str(args.records), "--dir",
                        str(base), "--generate-only"], check=True)
        print(f"generated {args.records:,} records in {time.perf_counter() - t:.1f} s "
              f"(child process, not counted) -> {run_dir}")

    from tritonload.analysis.load import load_runs
    from tritonload.analysis.pipeline import analyze
    from tritonload.analysis.report import write_report

    rss0 = peak_rss_bytes()
    t0 = time.perf_counter()
    runset = load_runs([run_dir])
    t1 = time.perf_counter()
    analysis = analyze(runset, slo_p95_ms=50, target_rps=50_000)
    t2 = time.perf_counter()
    write_report(analysis, out_dir)
    t3 = time.perf_counter()
    peak = peak_rss_bytes()

    n = len(runset.records)
    total = t3 - t0
    print(f"records loaded:   {n:,}")
    print(f"load:             {t1 - t0:6.2f} s")
    print(f"metrics+compare:  {t2 - t1:6.2f} s")
    print(f"report (3 files): {t3 - t2:6.2f} s")
    print(f"total:            {total:6.2f} s   (target < {TARGET_S:.0f} s)")
    print(f"peak RSS:         {peak / 1024**3:6.2f} GB (target < 4 GB; "
          f"{rss0 / 1024**2:.0f} MB after imports)")
    ok = total < TARGET_S and peak < TARGET_BYTES
    print("PASS" if ok else "FAIL")
    if not args.keep and args.dir is None:
        shutil.rmtree(base, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
