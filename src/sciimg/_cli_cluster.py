"""The command line's cluster options, shared by ``run`` and ``jobscript``, and
``sciimg jobscript``, which prints the batch scripts for a config."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sciimg._console import fail as _fail
from sciimg.errors import ConfigError

ClusterKind = Annotated[
    str | None,
    typer.Option(
        "--cluster",
        help="Where the workers come from: local, slurm, pbs, sge or lsf "
        "(overrides cluster.kind; other keys come from cluster: or dask's "
        "jobqueue config).",
    ),
]
SchedulerOpt = Annotated[
    str | None,
    typer.Option(
        help="Address of a running Dask scheduler (replaces the cluster: section)."
    ),
]
WorkersOpt = Annotated[
    int | None,
    typer.Option(min=1, help="Number of workers (overrides cluster.n_workers)."),
]
MemoryOpt = Annotated[
    str | None,
    typer.Option(
        "--memory-limit",
        help="Memory per worker, e.g. 4GB (overrides cluster.memory_limit).",
    ),
]


def cluster_overrides(
    kind: str | None, scheduler: str | None, workers: int | None, memory: str | None
) -> tuple[dict, dict]:
    """The CLI's cluster options as (sections merged, sections replaced)."""
    if scheduler:
        if kind or workers or memory:
            _fail(
                "--scheduler reaches a cluster that exists already: --cluster, "
                "--workers and --memory-limit apply to clusters sciimg starts"
            )
        return {}, {"cluster": {"kind": "scheduler", "address": scheduler}}
    section: dict = {}
    if kind:
        section["kind"] = kind
    if workers:
        section["n_workers"] = workers
    if memory:
        section["memory_limit"] = memory
    return {"cluster": section}, {}


def jobscript(
    config: Annotated[Path, typer.Argument(help="Pipeline YAML file.")],
    part: Annotated[
        str,
        typer.Option(
            help="worker: the job dask-jobqueue submits per worker; driver: a job "
            "that runs `sciimg run CONFIG`; both (default) prints both."
        ),
    ] = "both",
    cluster: ClusterKind = None,
    workers: WorkersOpt = None,
    memory_limit: MemoryOpt = None,
    driver_memory: Annotated[
        str, typer.Option(help="Memory of the driver job.")
    ] = "4GB",
    driver_walltime: Annotated[
        str | None,
        typer.Option(help="Walltime of the driver job (default: the workers')."),
    ] = None,
) -> None:
    """Print the batch job scripts for a CONFIG whose cluster is slurm/pbs/sge/lsf.

    Save the driver with `--part driver > run.sh` and submit it (sbatch run.sh);
    it starts the Dask scheduler and submits the worker jobs itself.
    """
    from sciimg.pipeline import load_config
    from sciimg.pipeline.jobscript import driver_script, worker_script

    if part not in ("worker", "driver", "both"):
        _fail(f"--part: expected worker, driver or both, got {part!r}")
    overrides, _ = cluster_overrides(cluster, None, workers, memory_limit)
    run_args = [
        arg
        for flag, value in (
            ("--cluster", cluster),
            ("--workers", workers),
            ("--memory-limit", memory_limit),
        )
        if value
        for arg in (flag, str(value))
    ]
    try:
        cfg = load_config(config, overrides)
        worker = worker_script(cfg.cluster)
        driver = driver_script(
            cfg.cluster,
            config,
            run_args=run_args,
            memory=driver_memory,
            walltime=driver_walltime,
        )
    except ConfigError as exc:
        _fail(f"{config}: {exc}" if not str(exc).startswith(str(config)) else exc)
    if part in ("worker", "both"):
        if part == "both":
            print("# ---- worker job: dask-jobqueue submits one per", end=" ")
            print("worker job; shown for review ----")
        print(worker)
    if part in ("driver", "both"):
        if part == "both":
            print("# ---- driver job: submit this one ----")
        print(driver, end="")
