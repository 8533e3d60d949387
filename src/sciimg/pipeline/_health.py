"""What watching a run's cluster rests on: how long a run waits on it before it
says so, restarts a worker or gives up (from the ``cluster:`` section), how
Dask's retries are bounded on the clusters sciimg starts, which item and step a
task belongs to, and the line that says what a quiet run is waiting for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

from sciimg.pipeline._own_settings import ALLOWED_FAILURES, own_cluster_config
from sciimg.pipeline.cluster_config import BATCH_KINDS, ClusterConfig, parse_duration

__all__ = [
    "Limits",
    "Look",
    "Owners",
    "Pause",
    "Removal",
    "duration",
    "limit_of",
    "limit_text",
    "limits_for",
    "remember",
    "scheduler_state",
    "size",
    "steps_text",
    "waiting",
]

_ADVICE = {
    "local": "give workers more memory (cluster.memory_limit / --memory-limit) "
    "or lower chunk_memory",
    "batch": "give workers more memory (cluster.memory_limit or memory / "
    "--memory-limit) or lower chunk_memory",
    "scheduler": "give the workers more memory (dask worker --memory-limit) or "
    "lower chunk_memory",
}


def _allowed_failures() -> int:
    import dask

    return int(dask.config.get(ALLOWED_FAILURES))


@dataclass(frozen=True)
class Limits:
    """How long a run waits on its cluster, in seconds (None: no limit).

    Attributes
    ----------
    lost : float or None
        No worker (or no scheduler) for this long ends the run.
    quiet : float or None
        Nothing finished for this long: say what the run waits for.
    pause : float or None
        A worker paused with nothing running for this long is restarted.
    allowed_failures : int
        Workers that may be lost with an item's tasks before the item fails.
    advice : str
        What to change when workers run out of memory.

    Examples
    --------
    >>> Limits.for_cluster(ClusterConfig(kind="scheduler", address="tcp://h:8786",
    ...                                  lost_timeout="30s")).lost
    30.0
    >>> Limits.for_cluster(ClusterConfig(kind="slurm", cores=1, memory="4GB",
    ...                                  max_jobs=4)).lost is None
    True
    """

    lost: float | None = 60.0
    quiet: float | None = 120.0
    pause: float | None = 120.0
    allowed_failures: int = 3
    advice: str = "give the workers more memory or lower chunk_memory"

    @classmethod
    def for_cluster(cls, cfg: ClusterConfig) -> Limits:
        """The limits of a ``cluster:`` section.

        ``lost_timeout`` defaults to 60 s, and for a batch kind to
        ``startup_timeout`` (no limit when that is unset): a batch cluster's
        workers come from a queue, which may hold replacement jobs for hours.
        """

        def seconds(value: str | None) -> float | None:
            return None if value is None else parse_duration(value)

        batch = cfg.kind in BATCH_KINDS
        lost = cfg.lost_timeout
        if lost is None:
            lost = cfg.startup_timeout if batch else "60s"
        own = own_cluster_config() if cfg.kind != "scheduler" else {}
        return cls(
            lost=seconds(lost),
            quiet=seconds(cfg.quiet_warning),
            pause=seconds(cfg.pause_timeout),
            allowed_failures=own.get(ALLOWED_FAILURES, _allowed_failures()),
            advice=_ADVICE["batch" if batch else cfg.kind],
        )


_LIMITS: WeakKeyDictionary = WeakKeyDictionary()


def remember(client: Any, limits: Limits) -> None:
    """Keep the limits of the cluster ``client`` was opened for (see `limits_for`).

    Examples
    --------
    >>> remember(client, Limits(lost=30.0))  # doctest: +SKIP
    >>> limits_for(client).lost              # doctest: +SKIP
    30.0
    """
    _LIMITS[client] = limits


def limits_for(client: Any) -> Limits:
    """The limits `remember` kept for ``client``; the defaults for another one.

    Examples
    --------
    >>> limits_for(object()).lost
    60.0
    """
    try:
        return _LIMITS.get(client) or Limits()
    except TypeError:  # not weakly referable: never remembered
        return Limits()


def scheduler_state(dask_scheduler: Any) -> dict[str, Any]:
    """What ``Client.scheduler_info`` does not say: tasks queued on the scheduler,
    those waiting for a worker that can run them, and the tasks each worker said
    (in its last heartbeat) it was running; run there through
    ``Client.run_on_scheduler``.

    Examples
    --------
    >>> client.run_on_scheduler(scheduler_state)  # doctest: +SKIP
    {'queued': 12, 'unrunnable': 0, 'executing': {'tcp://10.0.0.5:4021': [...]}}
    """
    return {
        "queued": len(dask_scheduler.queued),
        "unrunnable": len(dask_scheduler.unrunnable),
        "executing": {
            addr: [ts.key for ts in ws.executing]
            for addr, ws in dask_scheduler.workers.items()
        },
    }


def duration(seconds: float) -> str:
    """A duration for a message.

    Examples
    --------
    >>> duration(60), duration(130), duration(9000), duration(2.5)
    ('60 s', '2.2 min', '2.5 h', '2.5 s')
    """
    if seconds < 120:
        return f"{seconds:.3g} s"
    if seconds < 7200:
        return f"{round(seconds / 60, 1):g} min"
    return f"{round(seconds / 3600, 1):g} h"


def size(nbytes: float) -> str:
    """A size in the decimal units configs give them in.

    Examples
    --------
    >>> size(250e6), size(4e9), size(512)
    ('250 MB', '4 GB', '512 B')
    """
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.3g} {unit}"
    return f"{nbytes:.0f} B"


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def limit_text(limit: int | None, memory: int | None = None, whose="its") -> str:
    """A worker's memory limit, and how much of it is used, for a message.

    Examples
    --------
    >>> limit_text(400e6), limit_text(400e6, 348e6), limit_text(0, whose="their")
    ('its 400 MB memory limit', '87% of its 400 MB memory limit', 'their memory limit')
    """
    text = f"{whose} {size(limit)} memory limit" if limit else f"{whose} memory limit"
    return f"{memory / limit:.0%} of {text}" if limit and memory is not None else text


def limit_of(limits: dict[str, int], worker: str) -> int | None:
    """``worker``'s memory limit in ``limits`` (by address); for one never seen
    (restarted, it may die between two looks at the cluster), that of the
    workers seen, if they all have the same.

    Examples
    --------
    >>> limit_of({"a": 600, "b": 600}, "c"), limit_of({"a": 600, "b": 0}, "b")
    (600, 600)
    >>> limit_of({"a": 600, "b": 900}, "c") is None
    True
    """
    seen = set(limits.values()) - {0}
    return limits.get(worker) or (seen.pop() if len(seen) == 1 else None)


def steps_text(steps: list[str]) -> str:
    """``step mask`` or ``steps mask, dti``."""
    return f"step{'s' if len(steps) > 1 else ''} {', '.join(steps)}"


@dataclass
class Look:
    """One look at the cluster, from a watching thread."""

    at: float
    workers: dict[str, dict]
    processing: dict[str, tuple]
    held: dict[str, tuple]  # what paused workers hold in memory
    queued: dict[str, Any] | None  # `scheduler_state`, when it can be had
    newest: Any  # the most recently finished task, as the task stream has it


@dataclass
class Pause:
    """A worker seen paused: since when, idle since when, what was done."""

    since: float
    idle_since: float | None = None
    told: bool = False
    restarted: bool = False


@dataclass
class Removal:
    """A worker removed from the cluster without being asked to leave."""

    at: float
    worker: str
    keys: frozenset  # the tasks it was processing
    running: frozenset  # those among them seen running on it
    told: bool = False


class Owners:
    """Which item (by index) and step each task key belongs to.

    Examples
    --------
    >>> from types import SimpleNamespace as Job
    >>> owners = Owners([Job(owners={"a": "mask", "b": "dti"}),
    ...                  Job(owners={"c": "dti"})])
    >>> owners.of(["b", "a", "c", "x"], pending={0, 1})
    {0: ['mask', 'dti'], 1: ['dti']}
    """

    def __init__(self, jobs: list) -> None:
        self.owner: dict[Any, tuple[int, str]] = {}
        self.order: dict[str, int] = {}
        for i, job in enumerate(jobs):
            for key, step in job.owners.items():
                self.owner[key] = (i, step)
                self.order.setdefault(step, len(self.order))

    def of(self, keys, pending) -> dict[int, list[str]]:
        """Items in ``pending`` with tasks among ``keys``, with their steps in the
        pipeline's order."""
        found: dict[int, set[str]] = {}
        for key in keys:
            i, step = self.owner.get(key, (None, None))
            if i in pending:
                found.setdefault(i, set()).add(step)
        return {i: sorted(s, key=self.order.__getitem__) for i, s in found.items()}


def _workers(workers: dict[str, dict]) -> str:
    """How many workers, how full their memory is, how many are paused."""
    shares, limits = [], set()
    for w in workers.values():
        limits.add(w.get("memory_limit") or 0)
        if w.get("memory_limit"):
            shares.append(w.get("metrics", {}).get("memory", 0) / w["memory_limit"])
    text = _count(len(workers), "worker")
    if shares:
        low, high = round(100 * min(shares)), round(100 * max(shares))
        span = f"{low}%" if low == high else f"{low}-{high}%"
        limit = size(limits.pop()) if len(limits) == 1 else "their"
        text += f" using {span} of {limit} memory"
    paused = sum(w.get("status") == "paused" for w in workers.values())
    return text + (f", {paused} paused" if paused else "")


def waiting(
    quiet: float,
    last_task: float | None,
    items: dict[str, tuple[int, int, list[str]]],
    look: Any,
    no_worker_for: float | None,
) -> str:
    """The line of a run with no item finished for ``quiet`` seconds: whether
    tasks still finish (the last ``last_task`` seconds ago, None if none has
    since), the items in flight (outputs done, of how many, and the steps of
    their tasks on workers), the tasks, the workers.

    Examples
    --------
    >>> from types import SimpleNamespace as Look
    >>> look = Look(workers={"w": {"memory_limit": 4e9, "status": "running",
    ...                            "metrics": {"memory": 1e9,
    ...                                        "task_counts": {"executing": 1}}}},
    ...             processing={"w": ("k1", "k2")},
    ...             queued={"queued": 5, "unrunnable": 0})
    >>> items = {"sub-01": (3, 12, ["denoise"]), "sub-02": (0, 12, [])}
    >>> waiting(130, 4, items, look, None)
    'no item finished for 2.2 min, the last task 4 s ago; waiting for 2 items: \
sub-01 (3/12 outputs; step denoise on workers), sub-02 (0/12 outputs); 2 tasks on \
workers, 1 running, 5 queued; 1 worker using 25% of 4 GB memory'
    """
    shown = [
        f"{item} ({done}/{total} outputs"
        + (f"; {steps_text(steps)} on workers)" if steps else ")")
        for item, (done, total, steps) in list(items.items())[:4]
    ]
    more = f" and {len(items) - 4} more" if len(items) > 4 else ""
    on_workers = sum(len(keys) for keys in look.processing.values())
    running = sum(
        w.get("metrics", {}).get("task_counts", {}).get("executing", 0)
        for w in look.workers.values()
    )
    tasks = f"{_count(on_workers, 'task')} on workers, {running} running"
    if look.queued is not None:
        tasks += f", {look.queued['queued']} queued"
        if look.queued["unrunnable"]:
            tasks += f", {look.queued['unrunnable']} waiting for a worker to run them"
    if last_task is None:
        since = f"nothing finished for {duration(round(quiet))}"
    else:
        since = (
            f"no item finished for {duration(round(quiet))}, the last task "
            f"{duration(round(last_task))} ago"
        )
    return "; ".join(
        [
            since,
            f"waiting for {_count(len(items), 'item')}: {', '.join(shown)}{more}",
            tasks,
            _workers(look.workers)
            if look.workers
            else f"no worker for {duration(round(no_worker_for or 0))}",
        ]
    )
