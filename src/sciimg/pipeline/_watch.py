"""Watching the cluster while a run computes, so that it never waits in silence.

Dask copes with trouble quietly: a worker killed for memory is restarted and its
tasks tried again, a worker over its pause fraction runs nothing until memory is
freed (which may never happen), tasks wait for workers that may never come, and
a client that loses its scheduler loses its work. `Watch` looks at the cluster
every `POLL` seconds, from a thread of its own so that a slow answer never holds
up the items that finish, and says what it sees in one line per item:

* a worker restarted at its memory limit, or paused near it, while it held the
  item's tasks: which step, the limit, and what to change;
* a worker paused with nothing running for ``pause_timeout`` is restarted; an
  item held by more such workers than Dask's allowed failures fails;
* no worker for ``lost_timeout``, or the scheduler gone: the items in flight
  fail, and the run ends with its record written;
* no item finished for ``quiet_warning``: what the run waits for, and whether
  tasks still finish, again after twice as long.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter, deque
from typing import Any
from weakref import WeakKeyDictionary

from sciimg.pipeline._health import (
    Limits,
    Look,
    Owners,
    Pause,
    Removal,
    duration,
    limit_of,
    limit_text,
    scheduler_state,
    steps_text,
    waiting,
)

__all__ = ["Watch"]

logger = logging.getLogger(__name__)

#: Seconds between looks at the cluster: often enough that a limit of a few
#: seconds is kept to within this, rarely enough to cost the scheduler nothing.
POLL = 2.0
#: Seconds a worker's removal waits for its nanny's word that memory was the
#: cause: the two reach the scheduler on different connections.
GRACE = 1.0
#: Seconds a worker stays paused before it is worth a line: a pause that ends by
#: itself, once Dask has spilled to disk, or in a restart, is not.
PAUSE_TELL = 5.0
#: The topics of the scheduler's events read: the nanny's restarts for memory,
#: and the removal of workers (with the tasks they were processing).
TOPICS = ("worker-restart-memory", "all")

#: Since when each client's cluster has had no worker: the astronomy run
#: computes two phases on one client, and the second must not wait anew.
_NO_WORKER: WeakKeyDictionary = WeakKeyDictionary()
_UNSEEN = object()


class Watch:
    """Look at ``client``'s cluster while ``jobs`` compute; say what goes wrong
    and which items to give up on.

    Parameters
    ----------
    client : distributed.Client
    jobs : list
        The items being computed; their ``owners`` map task keys to steps.
    log : callable
        Where each line goes.
    limits : Limits
        How long to wait on what.

    Examples
    --------
    >>> watch = Watch(client, jobs, print, limits_for(client))  # doctest: +SKIP
    >>> watch.start()                                           # doctest: +SKIP
    >>> watch.check(pending)  # {item index: (error, step)}    # doctest: +SKIP
    {}
    >>> watch.stop()                                            # doctest: +SKIP
    """

    def __init__(self, client: Any, jobs: list, log, limits: Limits) -> None:
        self.client, self.jobs, self.log, self.limits = client, jobs, log, limits
        self.owners = Owners(jobs)
        self.address = getattr(client.scheduler, "address", None) or "?"
        self.look: Look | None = None  # the latest, from the thread
        self.seen: Look | None = None  # the latest the main loop acted on
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.events: deque = deque()
        self.killed: set[str] = set()  # workers their nanny restarted for memory
        self.restarting: set[str] = set()  # paused workers restarted here
        self.removals: list[Removal] = []
        self.memory_limits: dict[str, int] = {}
        self.ran: dict[str, set] = {}  # worker -> its tasks seen running
        self.paused: dict[str, Pause] = {}
        self.pause_told: set[int] = set()
        self.pause_restarts: Counter = Counter()
        self.no_worker_since: float | None = _NO_WORKER.get(client)
        self.progress_at = time.monotonic()
        self.newest: Any = _UNSEEN
        self.task_at: float | None = None  # when a task last finished
        self.quiet_next = limits.quiet
        self.thread = threading.Thread(target=self._poll, daemon=True, name="watch")

    # -- the thread ---------------------------------------------------------

    def start(self) -> None:
        """Subscribe to the scheduler's events and start looking."""
        for topic in TOPICS:
            self.client.subscribe_topic(topic, self.events.append)
        self.thread.start()

    def stop(self) -> None:
        """Stop looking; unsubscribe while the scheduler can still be told (a
        scheduler that sends an event to a client gone logs an error)."""
        self.stopped.set()
        if self.client.status == "running":
            for topic in TOPICS:
                with contextlib.suppress(Exception):
                    self.client.unsubscribe_topic(topic)
        self.thread.join(timeout=POLL)

    def _poll(self) -> None:
        queues, every = True, 0.0
        while not self.stopped.wait(every):
            every = POLL
            if self.client.status != "running":
                continue
            try:
                workers = dict(self.client.scheduler_info(n_workers=-1)["workers"])
                # Less often on a large cluster: each look lists every worker.
                every = POLL * max(1.0, len(workers) / 100)
                processing = self.client.processing()
                paused = [a for a, w in workers.items() if w.get("status") == "paused"]
                held = self.client.has_what(paused) if paused else {}
                stream = self.client.get_task_stream(count=1)
                queued = None
                if queues:
                    try:
                        queued = self.client.run_on_scheduler(scheduler_state)
                    except Exception:  # sciimg cannot be imported there
                        queues = False
            except Exception as exc:
                logger.debug("could not look at the cluster: %r", exc)
                continue
            newest = None
            if stream:
                rec = stream[-1]
                stops = tuple(s.get("stop") for s in rec.get("startstops", ()))
                newest = (rec.get("key"), rec.get("worker"), stops)
            look = Look(time.monotonic(), workers, processing, held, queued, newest)
            with self.lock:
                self.look = look

    # -- what the main loop asks --------------------------------------------

    def progressed(self) -> None:
        """An item settled: the run is moving."""
        self.progress_at = time.monotonic()
        self.quiet_next = self.limits.quiet

    def lost(self) -> str | None:
        """Why nothing can be computed with this client any more (its scheduler
        is gone, and with it every task in flight), or None."""
        if self.client.status == "running":
            return None
        return (
            f"lost the Dask scheduler at {self.address} (it stopped, or the "
            "network to it failed); the work in flight is gone"
        )

    def check(self, pending) -> dict[int, tuple[str, str | None]]:
        """Say what the latest look shows; the items to fail now, each with its
        error and the step to blame (None when not one)."""
        now = time.monotonic()
        self.drain()
        self._tell_restarts(pending, now)
        with self.lock:
            look = self.look
        if look is None:
            return {}
        fail = {}
        if look is not self.seen:  # a new look: what changed
            self.seen = look
            self._update(look)
            fail = self._watch_pauses(look, pending, now)
        lost, gone = self.limits.lost, self.no_worker_since
        if lost is not None and gone is not None and now - gone >= lost:
            reason = (
                f"no Dask worker for {duration(lost)}: every worker of the "
                f"scheduler at {self.address} died or was stopped (killed, out of "
                "memory or out of walltime; see the workers' logs)"
            )
            return dict.fromkeys(pending, (reason, None))
        self._quiet(look, pending, now)
        return fail

    def _update(self, look: Look) -> None:
        for addr, w in look.workers.items():
            self.memory_limits[addr] = w.get("memory_limit") or 0
            # Seen running at some look, and not finished since.
            running = (look.queued or {}).get("executing", {}).get(addr, ())
            ran = self.ran.get(addr, set()) | set(running)
            self.ran[addr] = ran & set(look.processing.get(addr, ()))
        if look.newest != self.newest:
            if self.newest is not _UNSEEN:  # not one of an earlier computation
                self.task_at = look.at
            self.newest = look.newest
        if look.workers:
            self.no_worker_since = None
            _NO_WORKER.pop(self.client, None)
        elif self.no_worker_since is None:
            self.no_worker_since = _NO_WORKER[self.client] = look.at

    def memory_failure(self, i: int, futures) -> tuple[str, str | None] | None:
        """For item ``i`` failed with ``KilledWorker``: its error and step when
        its workers were restarted for memory (or stuck paused), or None."""
        from distributed import KilledWorker

        errors = [f.exception() for f in futures if f.status == "error"]
        killed = [e for e in errors if isinstance(e, KilledWorker)]
        if not killed:
            return None
        last = getattr(killed[0].last_worker, "address", None)
        deadline = time.monotonic() + GRACE
        self.drain()
        while not self._known(last) and time.monotonic() < deadline:
            time.sleep(0.1)
            self.drain()
        ours = [r for r in self.removals if self.owners.of(r.keys, {i})]
        memory = [r for r in ours if r.worker in self.killed]
        paused = [r for r in ours if r.worker in self.restarting]
        if not memory and not paused:
            return None
        # The tasks Dask gave up on (each was on every worker that died with it),
        # those seen running if any: a worker also holds tasks it has not begun.
        tasks = {e.task for e in killed}
        ran = tasks & set().union(*(r.running for r in memory + paused)) or tasks
        steps = self.owners.of(ran, {i}).get(i) or [
            s for r in memory + paused for s in self.owners.of(r.keys, {i})[i]
        ]
        steps = list(dict.fromkeys(steps))
        at = limit_text(
            limit_of(self.memory_limits, (memory or paused)[-1].worker), whose="their"
        )
        n = len(memory or paused)
        times = f"{n} time{'s' if n > 1 else ''}"
        if memory:
            what = f"workers restarted at {at} {times} while running"
        else:
            what = (
                f"workers stayed paused near {at} with nothing running, and were "
                f"restarted {times}, while holding"
            )
        error = f"{what} {steps_text(steps)}; {self.limits.advice}"
        return error, steps[0] if len(steps) == 1 else None

    def _known(self, worker: str | None) -> bool:
        """Whether the cause of ``worker``'s removal is known, or has had
        `GRACE` to arrive."""
        if worker in self.killed or worker in self.restarting:
            return True
        at = [r.at for r in self.removals if r.worker == worker]
        return bool(at) and time.monotonic() - at[-1] >= GRACE

    # -- memory -------------------------------------------------------------

    def drain(self) -> None:
        while self.events:
            _, msg = self.events.popleft()
            if "rss" in msg and "worker" in msg:  # a nanny restarted its worker
                self.killed.add(msg["worker"])
            elif msg.get("action") == "remove-worker" and not msg.get("expected"):
                keys = frozenset(msg.get("processing-tasks", ()))
                running = keys & self.ran.pop(msg["worker"], set())
                removal = Removal(time.monotonic(), msg["worker"], keys, running)
                self.removals.append(removal)

    def _tell_restarts(self, pending, now: float) -> None:
        """One line per item a worker was running when its nanny restarted it for
        memory: Dask tries the tasks again. Told after `GRACE`, by when an item
        whose tasks Dask gave up on has failed, and says so itself."""
        for r in self.removals:
            if r.told or now - r.at < GRACE:
                continue
            r.told = True
            if r.worker not in self.killed:
                continue  # another death, or a restart said already
            at = limit_text(limit_of(self.memory_limits, r.worker))
            for i, steps in self.owners.of(r.running or r.keys, pending).items():
                self.log(
                    f"{self.jobs[i].id}: a worker restarted at {at} while running "
                    f"{steps_text(steps)}; {self.limits.advice}"
                )

    def _watch_pauses(self, look: Look, pending, now: float) -> dict:
        fail: dict[int, tuple[str, str | None]] = {}
        for addr in set(self.paused) - set(look.workers):
            del self.paused[addr]
        for addr, w in look.workers.items():
            if w.get("status") != "paused":
                self.paused.pop(addr, None)
                continue
            pause = self.paused.setdefault(addr, Pause(look.at))
            metrics = w.get("metrics", {})
            if metrics.get("task_counts", {}).get("executing", 0):
                pause.idle_since = None
            elif pause.idle_since is None:
                pause.idle_since = look.at
            limit = w.get("memory_limit") or 0
            at = limit_text(limit, metrics.get("memory"))
            # The steps of its tasks; of the results it holds if it runs none.
            held = self.owners.of(look.processing.get(addr, ()), pending)
            held = held or self.owners.of(look.held.get(addr, ()), pending)
            if not pause.told and now - pause.since >= PAUSE_TELL:
                pause.told = True
                logger.warning("worker %s paused at %s", addr, at)
                for i, steps in held.items():
                    if i not in self.pause_told:
                        self.pause_told.add(i)
                        self.log(
                            f"{self.jobs[i].id}: a worker paused at {at} while "
                            f"holding {steps_text(steps)}; {self.limits.advice}"
                        )
            wait = self.limits.pause
            idle = pause.idle_since
            if wait is None or pause.restarted or idle is None or now - idle < wait:
                continue
            pause.restarted = True
            # Its results are lost with it, and counted against their items too.
            keys = (*look.processing.get(addr, ()), *look.held.get(addr, ()))
            for i, steps in self.owners.of(keys, pending).items():
                self.pause_restarts[i] += 1
                what = (
                    f"a worker stayed paused at {at} for {duration(wait)} with "
                    f"nothing running, while holding {steps_text(steps)}"
                )
                n = self.pause_restarts[i]
                if n > self.limits.allowed_failures:
                    step = steps[0] if len(steps) == 1 else None
                    fail[i] = (f"{what} ({n} times); {self.limits.advice}", step)
                else:
                    self.log(
                        f"{self.jobs[i].id}: {what}: restarting it; "
                        f"{self.limits.advice}"
                    )
            if set(pending) - set(fail):  # others may still need the worker
                self._restart(addr)
        return fail

    def _restart(self, addr: str) -> None:
        """Restart a worker through its nanny (one without is closed), from a
        thread: the call waits for the new worker."""
        self.restarting.add(addr)
        logger.warning("restarting worker %s: paused with nothing running", addr)

        def restart() -> None:
            try:
                self.client.restart_workers([addr], timeout=60, raise_for_error=False)
            except Exception as exc:
                logger.warning("could not restart worker %s: %r", addr, exc)

        threading.Thread(target=restart, daemon=True, name="restart").start()

    # -- a quiet run --------------------------------------------------------

    def _quiet(self, look: Look, pending, now: float) -> None:
        """No item finished for ``quiet_warning``: say what the run waits for
        (even while tasks finish: an item of many tasks may take long)."""
        quiet = now - self.progress_at
        if self.quiet_next is None or quiet < self.quiet_next:
            return
        # Again after twice as long, and at least once an hour.
        self.quiet_next = min(2 * quiet, quiet + 3600)
        tasks = [key for keys in look.processing.values() for key in keys]
        on_workers = self.owners.of(tasks, pending)
        items = {
            self.jobs[i].id: (
                sum(f.done() for f in pending[i]),
                len(pending[i]),
                on_workers.get(i, []),
            )
            for i in sorted(pending)
        }
        task_at = self.task_at if (self.task_at or 0) > self.progress_at else None
        last = now - task_at if task_at is not None else None
        no_worker = now - self.no_worker_since if self.no_worker_since else None
        self.log(waiting(quiet, last, items, look, no_worker))
