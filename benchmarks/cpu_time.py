"""CPU seconds of a process tree and of the whole machine, for the benchmarks' samplers."""

from __future__ import annotations

import psutil


def tree_cpu(proc: psutil.Process | None) -> float:
    """CPU seconds (user + sys) of a process, its threads and its live children."""
    if proc is None:
        return 0.0
    try:
        family = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for member in family:
        try:
            times = member.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


def busy_cpu() -> float:
    """CPU seconds the machine spent busy (all cores) since boot."""
    t = psutil.cpu_times()
    return t.user + t.system + t.nice + getattr(t, "irq", 0) + getattr(t, "softirq", 0)
