"""Sampling during one run of the astronomy memory sweep (``astro_memory.py``):
the RSS of the driver and of each worker, the bytes of the temporary warps on
disk, and which tasks ran while each worker's memory peaked."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import psutil

MiB = 2**20
INTERVAL = 0.05  # seconds between RSS samples


class RssSampler:
    """Samples the RSS of the driver and of given worker processes in a thread."""

    def __init__(self, worker_pids: list[int], interval: float = INTERVAL):
        self.driver = psutil.Process()
        self.workers = [psutil.Process(pid) for pid in worker_pids]
        self.interval = interval
        # (time, driver, sum of workers, largest worker, each worker)
        self.samples: list[tuple[float, int, int, int, list[int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def sample(self) -> tuple[float, int, int, int, list[int]]:
        each = []
        for proc in self.workers:
            try:
                each.append(proc.memory_info().rss)
            except psutil.Error:  # a worker that died (or was restarted)
                each.append(0)
        row = (
            time.perf_counter(),
            self.driver.memory_info().rss,
            sum(each),
            max(each, default=0),
            each,
        )
        self.samples.append(row)
        return row

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def peaks(self, t0: float = -float("inf"), t1: float = float("inf")) -> dict:
        rows = [r for r in self.samples if t0 <= r[0] <= t1]
        if not rows:
            return {}
        return {
            "driver_mib": max(r[1] for r in rows) / MiB,
            "workers_sum_mib": max(r[2] for r in rows) / MiB,
            "worker_max_mib": max(r[3] for r in rows) / MiB,
            "samples": len(rows),
        }


class ScratchSampler:
    """Samples the bytes of the run's temporary warps (``.warps.tmp-*`` in the
    output folder) in a thread: the disk the co-addition uses instead of memory."""

    def __init__(self, output: Path, interval: float = 0.25):
        self.output, self.interval = Path(output), interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def size(self) -> int:
        total = 0
        for folder in self.output.glob(".warps.tmp-*"):
            for path in folder.rglob("*"):
                with contextlib.suppress(OSError):
                    total += path.stat().st_size
        return total

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.size())
            self._stop.wait(self.interval)

    def __enter__(self) -> ScratchSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def attribute_tasks(
    records: list[dict], sampler: RssSampler, workers: list[str], offset: float
) -> dict:
    """What ran while each worker's memory peaked, and RSS during each task kind.

    For every task (grouped by its name prefix) the largest RSS of its worker
    while it ran, and the largest rise over the sample just before it started.
    Tasks shorter than the sampling interval are not seen.
    """
    import bisect

    from dask.utils import key_split

    times = [r[0] + offset for r in sampler.samples]
    index = {addr: i for i, addr in enumerate(workers)}
    running: list[list[tuple[float, float, str]]] = [[] for _ in workers]
    kinds: dict[str, dict] = {}
    for rec in records:
        w = index.get(rec.get("worker"))
        if w is None:
            continue
        name = key_split(rec["key"])
        for ss in rec.get("startstops", ()):
            if ss.get("action") != "compute":
                continue
            running[w].append((ss["start"], ss["stop"], name))
            i0 = bisect.bisect_left(times, ss["start"])
            i1 = bisect.bisect_right(times, ss["stop"])
            k = kinds.setdefault(
                name, {"tasks": 0, "seconds": 0.0, "rss_mib": 0.0, "rise_mib": 0.0}
            )
            k["tasks"] += 1
            k["seconds"] += ss["stop"] - ss["start"]
            if i1 <= i0:
                continue
            before = sampler.samples[max(i0 - 1, 0)][4][w]
            during = max(sampler.samples[i][4][w] for i in range(i0, i1))
            k["rss_mib"] = max(k["rss_mib"], during / MiB)
            k["rise_mib"] = max(k["rise_mib"], (during - before) / MiB)
    at_peak = []
    for w in range(len(workers)):
        i = max(range(len(times)), key=lambda j: sampler.samples[j][4][w])
        t = times[i]
        names = sorted({n for a, b, n in running[w] if a <= t <= b})
        at_peak.append(
            {"rss_mib": sampler.samples[i][4][w] / MiB, "running": names or None}
        )
    for k in kinds.values():
        k["seconds"] = round(k["seconds"], 2)
        k["rss_mib"] = round(k["rss_mib"], 1)
        k["rise_mib"] = round(k["rise_mib"], 1)
    top = dict(sorted(kinds.items(), key=lambda kv: -kv[1]["rss_mib"]))
    return {"at_worker_peak": at_peak, "by_kind": top}
