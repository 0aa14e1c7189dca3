"""The benchmarks' child processes: their CPU seconds, the machine's, and a bounded stop."""

from __future__ import annotations

import signal
import subprocess

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


def stop_child(proc: subprocess.Popen, grace_s: float, interrupt_wait_s: float = 30.0) -> None:
    """Wait ``grace_s`` for a child to end, then Ctrl-C it, then kill it."""
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(interrupt_wait_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
