"""Computing many items (subjects, exposures, patches) on a Dask cluster.

Each item is one computation ending in the writes of its store. Items are
submitted together, earlier ones first, and each is committed (or aborted) as
soon as its own results are in: a failure stays with its item, an interrupted
run keeps every item finished before it, and the cluster forgets an item's tasks
once it is settled, so the memory held does not grow with the number of items.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sciimg.errors import InputError
from sciimg.io import ZarrStoreWriter
from sciimg.pipeline._task_records import TaskRecords, show_progress, step_times
from sciimg.pipeline._watch import GRACE
from sciimg.pipeline.records import write_record

__all__ = ["ItemResult", "Job", "compute_jobs"]

logger = logging.getLogger(__name__)


@dataclass
class ItemResult:
    """What happened to one item (a subject, an exposure, a patch, an image)."""

    id: str
    status: str  # "done", "skipped", "failed" or "interrupted"
    seconds: float | None = None
    kind: str = "subject"  # "subject"; "exposure" or "patch" in astronomy
    error: str | None = None
    step: str | None = None  # the step whose task failed, when one did
    traceback: str | None = None  # of the original exception, on its worker
    store: str | None = None
    exports: list[str] = field(default_factory=list)
    steps: dict[str, dict[str, float]] = field(default_factory=dict)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if isinstance(exc, InputError) else f"{type(exc).__name__}: {text}"


@dataclass
class Job:
    """One item's computation (a subject, an exposure, a patch), as a stage's
    ``build`` returns it.

    ``targets`` are computed together; the ``writer``'s store is committed
    once they all are (after ``finish``), and the item's record written last.
    ``owners`` maps task keys to step names, for the per-step timings and for
    naming the step of a failed task.
    """

    id: str
    fingerprint: str
    writer: ZarrStoreWriter
    targets: list  # lazy writes of every image of the store, then other results
    owners: dict[Any, str]  # task key -> step name
    kind: str = "subject"
    # Called with the computed targets before the store is committed; returns
    # attributes to add to the store. Raising fails the item.
    finish: Callable[[list], dict] | None = None
    # Called with the committed store; returns paths of exports.
    after: Callable[[Path], list[str]] | None = None
    depth: int = 0  # store names are relative to this many parents up


def _raising_step(job: Job, records: list[dict]) -> str | None:
    """The step whose task raised: the task stream records the task that
    raised, not those that only inherited its error."""
    for rec in records:
        if rec.get("status") == "error" and rec["key"] in job.owners:
            return job.owners[rec["key"]]
    return None


def _killed_steps(failed: list, job: Job) -> list[str]:
    """Steps with tasks on workers that died. A dying worker takes every task it
    holds with it, and Dask cannot tell which one was running."""
    from distributed import KilledWorker

    keys = {
        e.task for e in (f.exception() for f in failed) if isinstance(e, KilledWorker)
    }
    steps = {job.owners[k] for k in keys if k in job.owners}
    return [s for s in dict.fromkeys(job.owners.values()) if s in steps]


def _failure(job: Job, futures, records: list[dict], log) -> ItemResult:
    """An item whose computation raised: which step, and the original exception."""
    import traceback as tb

    from distributed import KilledWorker

    failed = [f for f in futures if f.status != "finished"]
    exc = failed[0].exception()
    step = _raising_step(job, records)
    error = _one_line(exc)
    if isinstance(exc, KilledWorker):
        held = _killed_steps(failed, job)
        step = held[0] if len(held) == 1 else None
        error = (
            "KilledWorker: a worker died (out of memory, killed, or out of "
            "walltime) while it held tasks of step "
            f"{', '.join(held) or '(unknown)'}"
        )
    trace = failed[0].traceback()
    result = ItemResult(
        job.id,
        "failed",
        error=error,
        kind=job.kind,
        step=step,
        traceback="".join(tb.format_exception(type(exc), exc, trace))
        if trace is not None
        else None,
    )
    log(f"{job.id}: failed in {f'step {step}' if step else 'its graph'}: {error}")
    logger.error("%s: failed\n%s", job.id, result.traceback or error)
    return result


def _settle(job: Job, futures, records: list[dict], log) -> ItemResult:
    """Commit a computed item's store, or abort it; what happened to it."""
    if any(f.status != "finished" for f in futures):
        job.writer.abort()
        return _failure(job, futures, records, log)
    steps, seconds = step_times(records, job.owners)
    root = job.writer.path.parents[job.depth]
    try:
        extra = job.finish([f.result() for f in futures]) if job.finish else {}
        job.writer.update_attrs({**extra, "timings": steps, "seconds": seconds})
        store = str(job.writer.commit().relative_to(root))
        exports = job.after(root / store) if job.after else []
        # Written last: the item counts as complete only once all of it is there.
        write_record(
            root, job.kind, job.id, job.fingerprint, [store, *exports], timings=steps
        )
    except Exception as exc:
        job.writer.abort()
        result = ItemResult(job.id, "failed", error=_one_line(exc), kind=job.kind)
        log(f"{job.id}: failed: {result.error}")
        logger.error("%s: failed", job.id, exc_info=exc)
        return result
    log(f"{job.id}: done" + (f" in {seconds:.1f} s" if seconds is not None else ""))
    return ItemResult(
        job.id,
        "done",
        seconds,
        store=store,
        exports=exports,
        steps=steps,
        kind=job.kind,
    )


def _bystander(watch, i: int, futures) -> bool:
    """Whether item ``i`` failed only because workers died holding some of its
    tasks while running another item's: Dask then gives up on every task the
    dying workers held. Such an item is worth computing again."""
    from distributed import KilledWorker

    errors = [f.exception() for f in futures if f.status == "error"]
    if not errors or not all(isinstance(e, KilledWorker) for e in errors):
        return False
    last = getattr(errors[0].last_worker, "address", None)
    deadline = time.monotonic() + GRACE  # the removal may still be on its way
    watch.drain()
    while not any(r.worker == last for r in watch.removals):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
        watch.drain()
    ours = [r for r in watch.removals if watch.owners.of(r.keys, {i})]
    running = set().union(*(r.running for r in ours))
    others = set(range(len(watch.jobs))) - {i}
    return not watch.owners.of(running, {i}) and bool(watch.owners.of(running, others))


def _give_up(job: Job, error: str, step: str | None, log) -> ItemResult:
    """An item the run stops waiting for: its cluster is lost, or its workers
    keep running out of memory. Its store is removed; one line says why."""
    job.writer.abort()
    log(f"{job.id}: failed{f' in step {step}' if step else ''}: {error}")
    logger.error("%s: failed: %s", job.id, error)
    return ItemResult(job.id, "failed", error=error, kind=job.kind, step=step)


def _settle_watched(job: Job, i: int, futures, records, watch, log) -> ItemResult:
    """`_settle`, with the error of an item whose workers were restarted for
    memory told as such rather than as a bare ``KilledWorker``."""
    lines: list[str] = []
    result = _settle(job, futures, records, lines.append)
    memory = watch.memory_failure(i, futures) if result.status == "failed" else None
    if memory is not None:
        result.error, result.step = memory
        lines = [
            f"{job.id}: failed{f' in step {result.step}' if result.step else ''}"
            f": {result.error}"
        ]
        logger.error("%s: %s", job.id, result.error)
    for line in lines:
        log(line)
    return result


#: Seconds between looks for finished items (as `distributed.as_completed` waits),
#: and between looks at every item.
_TICK, _SCAN = 0.1, 1.0


def compute_jobs(
    jobs: list[Job],
    client,
    results: dict[str, ItemResult],
    progress: bool,
    log,
) -> dict[str, Any]:
    """Compute every job on ``client``; commit or abort each store as it finishes.

    The cluster is watched meanwhile (see `sciimg.pipeline._watch`): items whose
    workers keep running out of memory fail with a line saying so, and a lost
    cluster or scheduler fails the items in flight, within the ``cluster:``
    section's limits, so that the caller can write the run's record.
    """
    from distributed import as_completed

    from sciimg.pipeline._health import limits_for
    from sciimg.pipeline._watch import Watch

    watch = Watch(client, jobs, log, limits_for(client))
    lost = watch.lost()
    if lost is not None:  # an earlier phase of this run lost the scheduler
        for job in jobs:
            results[job.id] = _give_up(job, lost, None, log)
        return {}
    info = client.scheduler_info(n_workers=-1)
    workers = info.get("workers", {})
    cluster_info = {
        "scheduler": client.scheduler.address,
        "dashboard": client.dashboard_link,
        "workers": len(workers),
        "threads": sum(w.get("nthreads", 0) for w in workers.values()),
    }
    # Once per client: the astronomy run computes two phases on one client.
    if not getattr(client, "_sciimg_announced", False):
        log(f"Dask dashboard: {client.dashboard_link}")
        client._sciimg_announced = True
    records = TaskRecords(client)
    # One computation per item, earlier items first: without the priorities every
    # item's reads (tasks that need nothing) would run ahead of the work that
    # consumes them. The graph is not re-optimised, so task keys stay those of
    # the steps, for the per-step timings.
    pending = {
        i: client.compute(job.targets, optimize_graph=False, priority=-i)
        for i, job in enumerate(jobs)
    }
    every = [f for fs in pending.values() for f in fs]
    bar = None
    if progress:
        bar, log = show_progress(every, log)
        watch.log = log
    finished = as_completed(every)
    del every
    watch.start()
    scanned = 0.0
    retried: set[int] = set()
    try:
        while pending:
            batch = finished.next_batch(block=False) if finished.has_ready() else []
            # Also now and then without one: a finished future whose data was
            # lost with a worker is done again later, but not yielded again.
            settled = []
            if batch or time.monotonic() - scanned > _SCAN:
                scanned = time.monotonic()
                settled = [i for i, fs in pending.items() if all(f.done() for f in fs)]
            lost = watch.lost()
            if lost is not None:
                # The scheduler is gone, and with it every task in flight.
                for i in list(pending):
                    results[jobs[i].id] = _give_up(jobs[i], lost, None, log)
                    del pending[i]
                break
            if settled:
                records.fetch()
                watch.progressed()
            for i in settled:
                job = jobs[i]
                if i not in retried and _bystander(watch, i, pending[i]):
                    # Once: the item that killed the workers has failed by now.
                    retried.add(i)
                    records.pop(job.owners)  # its times are those of the new try
                    log(
                        f"{job.id}: its tasks were lost with workers another item's "
                        "step brought down; computing it again"
                    )
                    # Its keys are forgotten first: a task Dask gave up on
                    # stays failed for as long as a future holds its key.
                    client.cancel(pending.pop(i))
                    pending[i] = client.compute(
                        job.targets, optimize_graph=False, priority=-i
                    )
                    finished.update(pending[i])
                    continue
                # Dropping the futures lets the cluster forget the item's tasks.
                futures = pending.pop(i)
                recs = records.pop(job.owners)
                results[job.id] = _settle_watched(job, i, futures, recs, watch, log)
                del futures
            for i, (error, step) in watch.check(pending).items():
                futures = pending.pop(i)
                with contextlib.suppress(Exception):
                    client.cancel(futures)
                results[jobs[i].id] = _give_up(jobs[i], error, step, log)
                del futures
            if not settled:
                time.sleep(_TICK)
    except KeyboardInterrupt:
        # Ctrl-C: what is still running is dropped; the caller removes the
        # unfinished stores once no worker can write into them any more.
        with contextlib.suppress(Exception):
            client.cancel([f for fs in pending.values() for f in fs])
        raise
    finally:
        watch.stop()
        if bar is not None:
            bar.join(timeout=5)  # its last line before the caller's summary
            print()
    return cluster_info
