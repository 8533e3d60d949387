"""What a run learns from the scheduler while its items compute: the task
stream, kept per task key for each item's per-step times, and the progress bar.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import Any

__all__ = ["TaskRecords", "show_progress", "step_times"]


def step_times(records: list[dict], owners: dict) -> tuple[dict, float | None]:
    """Per-step compute seconds (summed over tasks), task count and span."""
    per_step: dict[str, dict[str, float]] = defaultdict(
        lambda: {"compute_s": 0.0, "tasks": 0, "start": float("inf"), "stop": 0.0}
    )
    first, last = float("inf"), 0.0
    for rec in records:
        step = owners.get(rec["key"])
        if step is None:
            continue
        for ss in rec.get("startstops", ()):
            if ss.get("action") != "compute":
                continue
            s = per_step[step]
            s["compute_s"] += ss["stop"] - ss["start"]
            s["tasks"] += 1
            s["start"], s["stop"] = (
                min(s["start"], ss["start"]),
                max(s["stop"], ss["stop"]),
            )
            first, last = min(first, ss["start"]), max(last, ss["stop"])
    out = {
        name: {
            "compute_s": round(s["compute_s"], 4),
            "tasks": int(s["tasks"]),
            "span_s": round(s["stop"] - s["start"], 4),
        }
        for name, s in per_step.items()
    }
    return out, (round(last - first, 4) if last >= first else None)


class TaskRecords:
    """The scheduler's task stream, fetched as items finish, kept per task key.

    Only tasks computed since this object was made count: on a shared scheduler
    the stream also holds earlier runs' tasks, whose keys are the same when their
    graphs were (a subject's times once included its previous run's).
    """

    #: Seconds of overlap between fetches: the stream is selected by the workers'
    #: clocks, the fetches by this one's.
    SLACK = 60.0
    #: Seconds a worker's clock may run behind this one's, for the cut-off.
    SKEW = 1.0

    def __init__(self, client):
        self.client = client
        client.get_task_stream(count=0)  # installs the recording plugin
        self.since = self.began = time.time()
        self.by_key: dict[Any, list[dict]] = defaultdict(list)
        self.seen: dict[tuple, float] = {}
        # Schedulers that number their records (distributed 2026.x) are read
        # from the last record seen on: without it each fetch re-reads the
        # SLACK before it, which for a short run is the whole stream each time.
        self.cursor = self._call("get_task_stream_index")

    def _call(self, name: str, **kwargs) -> Any:
        """The scheduler's ``name``, or None where it has no such handler."""
        try:
            return self.client.sync(getattr(self.client.scheduler, name), **kwargs)
        except Exception:
            return None

    def _new_records(self) -> list[dict]:
        if self.cursor is not None:
            records = self._call("get_task_stream", start_index=self.cursor)
            if records is not None:
                self.cursor += len(records)  # an overlap is dropped below
                return records
            self.cursor = None
        return self.client.get_task_stream(start=self.since - self.SLACK)

    def fetch(self) -> None:
        now = time.time()
        for rec in self._new_records():
            stops = rec.get("startstops", ())
            if not stops or min(s["start"] for s in stops) < self.began - self.SKEW:
                continue  # an earlier run's task
            ident = (rec["key"], tuple(s.get("start") for s in stops))
            if ident not in self.seen:
                self.seen[ident] = now
                self.by_key[rec["key"]].append(rec)
        # Records older than the overlap cannot come back: forget them.
        horizon = self.since - 2 * self.SLACK
        self.seen = {k: t for k, t in self.seen.items() if t >= horizon}
        self.since = now

    def pop(self, keys) -> list[dict]:
        return [rec for key in keys for rec in self.by_key.pop(key, ())]


def show_progress(futures, log):
    """Distributed's task progress bar, drawn from a thread while items settle.

    Returns the thread and a ``log`` that first clears the bar's line, so that
    messages do not run on from the bar.
    """
    import sys

    from distributed.diagnostics.progressbar import TextProgressBar

    bar = TextProgressBar(futures, start=False)
    thread = threading.Thread(
        target=bar._loop_runner.run_sync, args=(bar.listen,), daemon=True
    )
    thread.start()

    def log_below(message):
        sys.stdout.write("\r\x1b[2K")
        sys.stdout.flush()
        log(message)

    return thread, log_below
