"""Wall time, CPU time and peak memory of a command and all its descendants.

A background thread samples the resident memory (RSS) of the process tree (the
JVM and Spark's Python workers, Dask's worker processes) every ``interval``
seconds; the peak is that of the sum over the tree. CPU time is the user plus system
time the kernel reports for the reaped tree (or the samples' sum, if larger).
"""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import dataclass

#: The environment variables that size native libraries' thread pools.
THREAD_LIMIT_NAMES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass
class Usage:
    """What one command used."""

    wall_s: float
    cpu_s: float
    peak_rss_mib: float
    returncode: int


def measure(cmd: list[str], *, interval: float = 0.05, env=None) -> Usage:
    """Run ``cmd`` to completion while sampling its process tree."""
    import os

    import psutil

    before = os.times()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env)
    root = psutil.Process(proc.pid)
    cpu: dict[int, float] = {}
    peak = 0.0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.Error:
                tree = []
            rss = 0
            for p in tree:
                try:
                    with p.oneshot():
                        rss += p.memory_info().rss
                        t = p.cpu_times()
                        cpu[p.pid] = t.user + t.system
                except psutil.Error:
                    continue
            peak = max(peak, rss / 2**20)
            done.wait(interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    code = proc.wait()
    wall = time.perf_counter() - t0
    done.set()
    thread.join()
    after = os.times()
    # Processes reaped by the time the command ends (Dask's workers, the JVM and
    # its Python workers, each waited for by its parent) roll their CPU time up
    # to the command, which we reap: the kernel's count is then complete. One
    # never reaped (an orphan) is only in the samples, which miss the last
    # interval of each process: the larger of the two counts is kept.
    reaped = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    return Usage(
        wall_s=round(wall, 3),
        cpu_s=round(max(reaped, sum(cpu.values())), 3),
        peak_rss_mib=round(peak, 1),
        returncode=code,
    )
