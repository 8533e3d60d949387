"""The ``cluster:`` section: where a run's Dask workers come from.

One schema for every place a pipeline runs, so a config moves from a laptop to a
batch system by changing ``kind`` alone:

* ``local`` (default): a LocalCluster on this machine;
* ``scheduler``: a Dask cluster already running at ``address``;
* ``slurm``, ``pbs``, ``sge``, ``lsf``: workers submitted as batch jobs through
  dask-jobqueue. Keys left out here are read from dask's own ``jobqueue.<kind>``
  configuration (``~/.config/dask/jobqueue.yaml``), as dask-jobqueue does.

``n_workers``, ``threads_per_worker`` and ``memory_limit`` size the workers in
every kind sciimg starts: on a batch system a job's ``cores`` and ``memory``
default to them times the worker processes per job, so a local config runs on a
batch system unchanged. An existing scheduler's workers are already sized, and
these keys are ignored there.
"""

from __future__ import annotations

import math
import re
import signal
import threading
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from sciimg.pipeline.strict import StrictModel


def _import_jobqueue() -> None:
    """Import dask-jobqueue, keeping this process's Ctrl-C handler.

    Imported here, not when first needed: it adds jobqueue's defaults to dask's
    configuration, which a dask.config.set made before would otherwise hide. Its
    ``runner`` module replaces the SIGINT handler with one that exits with status
    0, which made an interrupted run look successful: the handler is put back.
    """
    if threading.current_thread() is threading.main_thread():
        handler = signal.getsignal(signal.SIGINT)
        import dask_jobqueue

        signal.signal(signal.SIGINT, handler)
        return
    # Elsewhere (a task in a Dask worker's thread) setting a handler raises
    # ValueError, which would make sciimg.pipeline impossible to import there;
    # the handler jobqueue sets is not wanted anyway.
    setter = signal.signal
    signal.signal = lambda signum, handler: signal.getsignal(signum)
    try:
        import dask_jobqueue  # noqa: F401
    finally:
        signal.signal = setter


_import_jobqueue()

__all__ = ["BATCH_KINDS", "ClusterConfig", "KeyProblems", "parse_duration"]

#: Batch systems reached through dask-jobqueue.
BATCH_KINDS = ("slurm", "pbs", "sge", "lsf")

#: How a job asks for ``n`` GPUs on each batch system (sites vary: a site that
#: names them otherwise sets its own line in ``job_extra_directives``).
GPU_DIRECTIVES = {
    "slurm": "--gres=gpu:{n}",
    "pbs": "-l ngpus={n}",
    "sge": "-l gpu={n}",
    "lsf": '-gpu "num={n}"',
}

#: Keys that only a batch kind uses, and the one only ``scheduler`` uses.
_BATCH_KEYS = (
    "cores",
    "memory",
    "walltime",
    "queue",
    "account",
    "job_extra_directives",
    "gpus",
    "job_script_prologue",
    "local_directory",
    "log_directory",
    "interface",
    "min_jobs",
    "max_jobs",
)


class KeyProblems(ValueError):
    """Problems found by a validator that sees the whole section, each with the
    key it belongs to, so that each is still reported against its own key."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{key}: {msg}" for key, msg in problems))
        self.problems = problems


def check_size(value: str | None, example: str = "4GB") -> str | None:
    """``value`` if dask reads it as a size (or it is None or 'auto')."""
    from dask.utils import parse_bytes

    if value is not None and value != "auto":
        try:
            parse_bytes(value)
        except (ValueError, TypeError) as exc:
            msg = f"expected a size such as {example!r}, got {value!r}"
            raise ValueError(msg) from exc
    return value


def parse_duration(value: str | float) -> float:
    """Seconds in a duration as dask writes them ('90s', '5m', '2h'), or with
    minutes as 'min' ('30min'), which dask does not read.

    Examples
    --------
    >>> parse_duration("30min"), parse_duration("90s"), parse_duration("2 mins")
    (1800.0, 90.0, 120.0)
    """
    from dask.utils import parse_timedelta

    if isinstance(value, str):
        value = re.sub(r"(?<=[\d\s.])mins?$", "m", value.strip())
    return float(parse_timedelta(value))


def _times(size: str, n: int) -> str:
    """``size`` times ``n``, in the unit it was given in (4GB × 2 → 8GB)."""
    number, unit = re.fullmatch(r"\s*([0-9.]+)\s*(\w*)\s*", size).groups()
    return f"{float(number) * n:g}{unit}"


class ClusterConfig(StrictModel):
    """``cluster``: the Dask cluster a run uses.

    Examples
    --------
    >>> ClusterConfig().kind
    'local'
    >>> cfg = ClusterConfig(kind="slurm", cores=4, memory="16GB", walltime="02:00:00")
    >>> cfg.jobqueue_kwargs()["cores"], cfg.jobqueue_kwargs()["memory"]
    (4, '16GB')
    >>> ClusterConfig(n_workers=2, memory_limit="4GB", kind="pbs",
    ...               processes=2).jobqueue_kwargs()
    {'cores': 2, 'memory': '8GB', 'processes': 2}
    """

    kind: Literal["local", "scheduler", "slurm", "pbs", "sge", "lsf"] = Field(
        "local",
        description="local: a LocalCluster here; scheduler: a running cluster at "
        "address; slurm/pbs/sge/lsf: worker jobs through dask-jobqueue",
    )
    address: str | None = Field(
        None, description="kind scheduler: its address, e.g. tcp://host:8786"
    )

    # Sizing, for every kind sciimg starts itself.
    n_workers: int | None = Field(
        None,
        ge=1,
        description="local: default one per core; batch: workers kept running "
        "(default one job's worth) unless min_jobs/max_jobs make it adaptive",
    )
    threads_per_worker: int = Field(1, ge=1)
    memory_limit: str | None = Field(
        "auto",
        description="per worker, e.g. 4GB; local 'auto' shares the machine's "
        "memory; batch 'auto' takes the job memory from dask's jobqueue config",
    )
    processes: bool | int | None = Field(
        None,
        description="local: true for worker processes (default), false for "
        "threads in this process; batch: worker processes per job",
    )
    dashboard_address: str | None = Field(
        "127.0.0.1:0",
        description="where the dashboard listens: default this machine only, any free "
        "port (printed when the run starts); ':8787' for every interface, port 8787",
    )
    profile: bool = Field(
        False,
        description="Dask's statistical profiler on the workers (the dashboard's "
        "Profile page); off by default: sampling every worker thread every 10 ms "
        "doubled the astro tasks' time",
    )
    startup_timeout: str | None = Field(
        None,
        description="give up if no worker has joined after this long, e.g. 30min; "
        "default: wait (a batch queue may hold jobs for hours)",
    )
    lost_timeout: str | None = Field(
        None,
        description="end the run when the cluster has had no worker this long, "
        "failing the items in flight, e.g. 5min; default 60s, and for the batch "
        "kinds startup_timeout (a queue may hold replacement jobs for hours)",
    )
    pause_timeout: str | None = Field(
        "2min",
        description="restart a worker paused at its memory limit with nothing "
        "running for this long (its tasks count as tried, as when it dies); "
        "null: never",
    )
    quiet_warning: str | None = Field(
        "2min",
        description="when no item has finished for this long, say what the run "
        "is waiting for (and whether tasks still finish), then again after twice "
        "as long; null: never",
    )

    # dask-jobqueue's keys, for the batch kinds.
    cores: int | None = Field(None, ge=1, description="cores per job")
    memory: str | None = Field(None, description="memory per job, e.g. 16GB")
    walltime: str | None = Field(None, description="per job, e.g. 02:00:00")
    queue: str | None = Field(None, description="queue or partition")
    account: str | None = Field(None, description="account or project charged")
    job_extra_directives: list[str] | None = Field(
        None, description="more scheduler directives, e.g. ['--qos=long']"
    )
    gpus: int | None = Field(
        None, ge=1, description="GPUs per job (device: gpu asks 1): 1 worker per job"
    )
    job_script_prologue: list[str] | None = Field(
        None, description="shell lines before the worker starts, e.g. module load"
    )
    local_directory: str | None = Field(
        None, description="fast node-local disk for spilling, e.g. $TMPDIR"
    )
    log_directory: str | None = Field(None, description="where job logs go")
    interface: str | None = Field(
        None, description="network interface workers and scheduler use, e.g. ib0"
    )
    min_jobs: int | None = Field(None, ge=0, description="adaptive: fewest jobs")
    max_jobs: int | None = Field(None, ge=1, description="adaptive: most jobs")

    @field_validator("memory_limit", "memory")
    @classmethod
    def _size(cls, value: str | None) -> str | None:
        return check_size(value)

    @field_validator(
        "startup_timeout", "lost_timeout", "pause_timeout", "quiet_warning"
    )
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                seconds = parse_duration(value)
            except (ValueError, TypeError, KeyError) as exc:
                msg = f"expected a duration such as '30min', got {value!r}"
                raise ValueError(msg) from exc
            if seconds <= 0:
                msg = f"expected a positive duration such as '30min', got {value!r}"
                raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _keys_fit_kind(self) -> ClusterConfig:
        given = self.model_fields_set
        batch = self.kind in BATCH_KINDS
        problems = [
            (key, f"applies to kinds {', '.join(BATCH_KINDS)}, not {self.kind!r}")
            for key in _BATCH_KEYS
            if key in given and getattr(self, key) is not None and not batch
        ]
        if self.kind == "scheduler" and not self.address:
            problems.append(("address", "required for kind 'scheduler'"))
        if self.address and self.kind != "scheduler":
            problems.append(
                ("address", f"applies to kind 'scheduler', not {self.kind!r}")
            )
        if self.gpus is not None and self.gpus > 1:
            problems.append(
                ("gpus", "one GPU per worker job: more GPUs come from more jobs")
            )
        if batch and isinstance(self.processes, bool):
            problems.append(("processes", "expected worker processes per job"))
        elif batch and self.processes is not None and self.processes < 1:
            problems.append(("processes", "expected at least 1"))
        elif self.kind == "local" and type(self.processes) is int:
            problems.append(("processes", "expected true (processes) or false"))
        if batch and {"min_jobs", "max_jobs"} & given and "n_workers" in given:
            problems.append(
                (
                    "n_workers",
                    "fixes the number of workers, while min_jobs/max_jobs make "
                    "the cluster adaptive: give one or the other",
                )
            )
        if (
            self.kind == "lsf"
            and self.walltime
            and not re.fullmatch(r"(\d+:)?\d+", self.walltime)
        ):
            problems.append(("walltime", "LSF takes [hours:]minutes, e.g. 04:00"))
        if (self.min_jobs or 0) > (self.max_jobs or math.inf):
            problems.append(("min_jobs", "larger than max_jobs"))
        if batch and not problems:
            problems += [
                (
                    key,
                    f"needed for kind {self.kind!r}: set cluster.{key}, or "
                    f"jobqueue.{self.kind}.{key} in dask's configuration",
                )
                for key in ("cores", "memory")
                if self.batch_value(key) is None
            ]
        if problems:
            raise KeyProblems(problems)
        return self

    # -- what dask-jobqueue is given ------------------------------------------

    def _jobqueue_default(self, key: str) -> Any:
        import dask

        return dask.config.get(f"jobqueue.{self.kind}.{key}", None)

    def batch_value(self, key: str) -> Any:
        """A dask-jobqueue setting as the batch cluster will have it: from this
        section, or else from dask's ``jobqueue.<kind>`` configuration."""
        return self.jobqueue_kwargs().get(key, self._jobqueue_default(key))

    def worker_processes(self) -> int:
        """Worker processes per batch job: set here, in dask's config, or as
        dask-jobqueue would choose for the job's cores."""
        from dask_jobqueue.core import nprocesses_nthreads

        if self.gpus:  # the job's one worker holds its GPU
            return 1
        if self.processes is not None:
            return int(self.processes)
        if self._jobqueue_default("processes"):
            return int(self._jobqueue_default("processes"))
        cores = self.cores or self._jobqueue_default("cores")
        if cores and "threads_per_worker" not in self.model_fields_set:
            return nprocesses_nthreads(int(cores))[0]
        return 1

    def jobqueue_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for the dask-jobqueue cluster of this ``kind``.

        Keys left ``None`` are left out, so dask-jobqueue reads them from dask's
        ``jobqueue.<kind>`` configuration.
        """
        given = self.model_fields_set
        procs = self.worker_processes()
        cores = self.cores
        if cores is None and (
            "threads_per_worker" in given or self._jobqueue_default("cores") is None
        ):
            cores = self.threads_per_worker * procs
        memory = self.memory
        if memory is None and self.memory_limit not in (None, "auto"):
            memory = _times(self.memory_limit, procs)
        if memory is None:
            memory = self._jobqueue_default("memory")
        kwargs: dict[str, Any] = {
            "cores": cores,
            "memory": memory,
            "processes": procs,
            "walltime": self.walltime,
            "queue": self.queue,
            "job_extra_directives": [
                *(self.job_extra_directives or []),
                *([GPU_DIRECTIVES[self.kind].format(n=self.gpus)] if self.gpus else []),
            ]
            or None,
            "job_script_prologue": self.job_script_prologue,
            "local_directory": self.local_directory,
            "log_directory": self.log_directory,
            "interface": self.interface,
        }
        # SGE and LSF call the account a project.
        kwargs["account" if self.kind in ("slurm", "pbs") else "project"] = self.account
        return {k: v for k, v in kwargs.items() if v is not None}

    def batch_jobs(self) -> int:
        """Jobs for a fixed-size batch cluster: enough for ``n_workers`` workers."""
        return max(1, math.ceil((self.n_workers or 1) / self.worker_processes()))
