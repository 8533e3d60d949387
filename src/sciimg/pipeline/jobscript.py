"""Batch scripts for a config: the worker job dask-jobqueue submits, and a driver
job that runs ``sciimg run`` (and so the Dask scheduler) on a compute node."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from sciimg.errors import ConfigError
from sciimg.pipeline._own_settings import worker_prologue
from sciimg.pipeline.cluster import batch_cluster_class
from sciimg.pipeline.cluster_config import BATCH_KINDS, ClusterConfig

__all__ = ["driver_script", "worker_script"]

#: What the worker script shows where the scheduler's address will go.
SCHEDULER_PLACEHOLDER = "tcp://SCHEDULER-ADDRESS:8786"

#: What the batch system is called in a script's comments.
_SUBMIT = {"slurm": "sbatch", "pbs": "qsub", "sge": "qsub", "lsf": "bsub <"}


def _check_batch(cfg: ClusterConfig) -> None:
    if cfg.kind not in BATCH_KINDS:
        raise ConfigError(
            f"cluster.kind is {cfg.kind!r}: job scripts are for kinds "
            f"{', '.join(BATCH_KINDS)} (set cluster.kind, or pass --cluster)"
        )


def worker_script(cfg: ClusterConfig) -> str:
    """The job script dask-jobqueue submits for each worker job of ``cfg``.

    The scheduler's address is known only once it runs, so the script shows
    `SCHEDULER_PLACEHOLDER` there.

    Examples
    --------
    >>> cfg = ClusterConfig(kind="slurm", cores=4, memory="16GB",
    ...                     walltime="02:00:00", queue="short")
    >>> print(worker_script(cfg))  # doctest: +ELLIPSIS
    #!/usr/bin/env bash
    <BLANKLINE>
    #SBATCH -J dask-worker
    #SBATCH -p short
    #SBATCH -n 1
    #SBATCH --cpus-per-task=4
    #SBATCH --mem=15G
    #SBATCH -t 02:00:00
    <BLANKLINE>
    ... -m distributed.cli.dask_worker tcp://SCHEDULER-ADDRESS:8786 --name WORKER-NAME
    --nthreads 1 --memory-limit 3.73GiB --nworkers 4 --nanny --death-timeout 60
    <BLANKLINE>
    """
    _check_batch(cfg)
    job_cls = batch_cluster_class(cfg.kind).job_cls
    kwargs = cfg.jobqueue_kwargs()
    kwargs["job_script_prologue"] = worker_prologue(cfg)
    job = job_cls(scheduler=SCHEDULER_PLACEHOLDER, name="WORKER-NAME", **kwargs)
    return job.job_script()


def driver_script(
    cfg: ClusterConfig,
    config: str | Path,
    *,
    run_args: list[str] | None = None,
    memory: str = "4GB",
    walltime: str | None = None,
    workdir: str | Path | None = None,
) -> str:
    """A job script that runs ``sciimg run CONFIG`` on a compute node.

    The driver job holds the Dask scheduler and submits the worker jobs itself,
    so it needs one core, modest memory and a walltime that covers the whole
    run. It asks the same queue and account as the workers.

    Parameters
    ----------
    cfg : ClusterConfig
        A batch kind (slurm, pbs, sge, lsf).
    config : path
        The pipeline config the job runs; made absolute.
    run_args : list of str, optional
        More arguments for ``sciimg run`` (e.g. ``["--cluster", "slurm"]``).
    memory : str
        The driver job's memory.
    walltime : str, optional
        The driver job's walltime; default the workers'.
    workdir : path, optional
        Where the job starts, so relative paths in the config mean what they
        mean here; default the current directory.

    Examples
    --------
    >>> cfg = ClusterConfig(kind="pbs", cores=8, memory="32GB", walltime="04:00:00")
    >>> print(driver_script(cfg, "/data/neuro.yaml", workdir="/data"))
    ... # doctest: +ELLIPSIS
    #!/usr/bin/env bash
    <BLANKLINE>
    #PBS -N sciimg-run
    #PBS -l select=1:ncpus=1:mem=3815MB
    #PBS -l walltime=04:00:00
    <BLANKLINE>
    # Runs the pipeline; its Dask scheduler lives in this job and submits the
    # worker jobs. Submit with: qsub THIS-FILE
    cd /data
    exec ... -m sciimg run /data/neuro.yaml --no-progress
    <BLANKLINE>
    """
    _check_batch(cfg)
    kwargs = cfg.jobqueue_kwargs()
    kwargs.update(cores=1, processes=1, memory=memory)
    if walltime:
        kwargs["walltime"] = walltime
    # The driver writes its own log; the workers' log folder is theirs.
    kwargs.pop("log_directory", None)
    job_cls = batch_cluster_class(cfg.kind).job_cls
    job = job_cls(scheduler=SCHEDULER_PLACEHOLDER, job_name="sciimg-run", **kwargs)
    prologue = list(cfg.job_script_prologue or [])
    command = [
        _python(cfg),
        "-m",
        "sciimg",
        "run",
        str(Path(config).resolve()),
        *(run_args or []),
        "--no-progress",
    ]
    lines = [
        "#!/usr/bin/env bash",
        "",
        job.job_header,
        "",
        "# Runs the pipeline; its Dask scheduler lives in this job and submits the",
        f"# worker jobs. Submit with: {_SUBMIT[cfg.kind]} THIS-FILE",
        *prologue,
        f"cd {shlex.quote(str(Path(workdir or Path.cwd()).resolve()))}",
        "exec " + " ".join(shlex.quote(c) for c in command),
        "",
    ]
    return "\n".join(lines)


def _python(cfg: ClusterConfig) -> str:
    import dask

    return dask.config.get(f"jobqueue.{cfg.kind}.python", None) or sys.executable
