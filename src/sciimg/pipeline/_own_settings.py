"""The Dask settings sciimg gives the clusters it starts, and the job-script
lines that give them to batch workers, which read their own configuration."""

from __future__ import annotations

from typing import Any

__all__ = [
    "ALLOWED_FAILURES",
    "OWN_ALLOWED_FAILURES",
    "own_cluster_config",
    "worker_prologue",
]

#: Workers that may die with a task before Dask gives it up, on the clusters
#: sciimg starts (Dask's default is 3). A task that takes its worker over the
#: memory limit does so again at the same limit, and each try costs a worker
#: restart; one retry still spares a task that was only queued on a worker that
#: another task killed.
OWN_ALLOWED_FAILURES = 1

ALLOWED_FAILURES = "distributed.scheduler.allowed-failures"

#: Dask starts worker processes with glibc's ``MALLOC_TRIM_THRESHOLD_`` at 64 KiB,
#: to hand freed memory back to the system at once. Setting it also turns off
#: glibc's adaptive mmap threshold, so every large temporary array is mapped,
#: faulted in page by page and unmapped again: measured in one worker process
#: it made a warp 1.9× and calibration 1.2× as costly in CPU as in the process
#: that started the cluster. The clusters sciimg starts leave glibc's default.
_MALLOC_TRIM = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"

#: Dask's statistical profiler (the dashboard's Profile page) walks every worker
#: thread's stack every 10 ms. Measured on the astro benchmark it doubled the
#: tasks' time (calibrate, warp and co-add alike), so the clusters sciimg starts
#: run without it unless ``cluster.profile`` turns it on.
_PROFILE = "distributed.worker.profile.enabled"


def own_cluster_config(profile: bool = False) -> dict[str, Any]:
    """Dask settings for a cluster sciimg starts: `OWN_ALLOWED_FAILURES` and
    glibc's own malloc settings in the workers, each unless dask's configuration
    sets a value of its own, and the workers' statistical profiler on or off
    (``cluster.profile``).

    Examples
    --------
    >>> for key, value in own_cluster_config().items():
    ...     print(key, value)
    distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_ None
    distributed.scheduler.allowed-failures 1
    distributed.worker.profile.enabled False
    """
    import dask

    defaults = dask.config.merge(*dask.config.defaults)
    own: dict[str, Any] = {_PROFILE: bool(profile)}
    for key, value in ((ALLOWED_FAILURES, OWN_ALLOWED_FAILURES), (_MALLOC_TRIM, None)):
        if dask.config.get(key, None) == dask.config.get(key, None, config=defaults):
            own[key] = value
    return dict(sorted(own.items()))


def worker_prologue(cfg: Any) -> list[str]:
    """The job script prologue of a batch cluster's worker jobs: the user's
    ``job_script_prologue``, then exports that give the workers (which read
    their own configuration) the settings of :func:`own_cluster_config`.

    Examples
    --------
    >>> from sciimg.pipeline.cluster_config import ClusterConfig
    >>> cfg = ClusterConfig(kind="slurm", memory="8GB",
    ...                     job_script_prologue=["module load gcc"])
    >>> print("\\n".join(worker_prologue(cfg)))
    module load gcc
    export DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False
    export DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON="{'MALLOC_TRIM_THRESHOLD_': None}"
    """
    own = own_cluster_config(cfg.profile)
    lines = list(cfg.job_script_prologue or [])
    if own[_PROFILE] is False:
        lines.append("export DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False")
    if _MALLOC_TRIM in own:
        # A dict, not a key of its own: dask lower-cases the names it reads
        # from the environment, and this variable's name is upper case.
        value = "\"{'MALLOC_TRIM_THRESHOLD_': None}\""
        lines.append(f"export DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON={value}")
    return lines
