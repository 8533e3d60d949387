"""Getting a Dask client for a ``cluster:`` section: a LocalCluster sized to the
machine, a running scheduler, or batch jobs through dask-jobqueue."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sciimg.errors import ClusterError, ConfigError
from sciimg.pipeline._health import Limits, remember
from sciimg.pipeline._own_settings import own_cluster_config, worker_prologue
from sciimg.pipeline.cluster_config import BATCH_KINDS, ClusterConfig, parse_duration
from sciimg.pipeline.worker_start import (
    METHOD_KEY,
    start_method,
    workers_ignore_ctrl_c,
)

__all__ = ["batch_cluster_class", "connect", "open_client"]


def batch_cluster_class(kind: str) -> type:
    """The dask-jobqueue cluster class for a batch ``kind`` (slurm, pbs, sge, lsf).

    Examples
    --------
    >>> batch_cluster_class("slurm").__name__
    'SLURMCluster'
    """
    import dask_jobqueue

    classes = {
        "slurm": dask_jobqueue.SLURMCluster,
        "pbs": dask_jobqueue.PBSCluster,
        "sge": dask_jobqueue.SGECluster,
        "lsf": dask_jobqueue.LSFCluster,
    }
    return classes[kind]


def _as_config(cfg: ClusterConfig | Mapping[str, Any] | None) -> ClusterConfig:
    if isinstance(cfg, ClusterConfig):
        return cfg
    from pydantic import ValidationError

    from sciimg.pipeline.config_errors import pydantic_lines

    try:
        return ClusterConfig(**(cfg or {}))
    except ValidationError as exc:
        lines = pydantic_lines(exc, ("cluster",), ClusterConfig)
        raise ConfigError("\n".join(lines)) from None


def open_client(
    cfg: ClusterConfig | Mapping[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
) -> Any:
    """Start (or reach) the cluster ``cfg`` describes and return a client for it.

    In Jupyter, showing the client shows the cluster's widget with its dashboard
    link. ``client.shutdown()`` stops a cluster this function started (for kind
    ``scheduler`` use ``client.close()``, which leaves the cluster running).

    Parameters
    ----------
    cfg : ClusterConfig or mapping, optional
        A ``cluster:`` section; by default a LocalCluster sized to the machine.
    log : callable, optional
        Told about batch jobs submitted and workers awaited.

    Returns
    -------
    distributed.Client
        Its ``cluster`` attribute is the cluster started, if any.

    Raises
    ------
    ConfigError
        The section is not valid.
    ClusterError
        No scheduler answers at ``address``, or no worker joined within
        ``startup_timeout``.

    Examples
    --------
    >>> client = open_client({"n_workers": 1, "processes": False,
    ...                       "dashboard_address": ":0"})
    >>> client.submit(sum, [1, 2]).result()
    3
    >>> client.shutdown()
    """
    import dask

    cfg = _as_config(cfg)
    limits = Limits.for_cluster(cfg)
    # A scheduler sciimg starts gives up on a task after fewer worker deaths.
    own = own_cluster_config(cfg.profile) if cfg.kind != "scheduler" else {}
    method = start_method(cfg)
    if method is not None:  # workers forked from the server a run started
        own[METHOD_KEY] = method
    with dask.config.set(own):
        client = _open(cfg, log or (lambda message: None), forked=method is not None)
    remember(client, limits)
    return client


def _open(cfg: ClusterConfig, log: Callable[[str], None], forked: bool = False) -> Any:
    from distributed import Client, LocalCluster

    if cfg.kind == "scheduler":
        try:
            return Client(cfg.address)
        except (OSError, TimeoutError) as exc:
            msg = (
                f"cluster.address: no Dask scheduler answers at {cfg.address} "
                f"({' '.join(str(exc).split()) or type(exc).__name__})"
            )
            raise ClusterError(msg) from exc
    if cfg.kind == "local":
        threads = cfg.threads_per_worker
        # Forks of the server inherit its disposition, set when it started.
        with contextlib.nullcontext() if forked else workers_ignore_ctrl_c():
            cluster = LocalCluster(
                n_workers=cfg.n_workers or max(1, (os.cpu_count() or 1) // threads),
                threads_per_worker=threads,
                memory_limit=cfg.memory_limit,
                processes=cfg.processes is not False,
                dashboard_address=cfg.dashboard_address,
                silence_logs=logging.ERROR,
            )
        return Client(cluster)
    kwargs = cfg.jobqueue_kwargs()
    kwargs["job_script_prologue"] = worker_prologue(cfg)
    cluster = batch_cluster_class(cfg.kind)(
        scheduler_options={"dashboard_address": cfg.dashboard_address},
        silence_logs=logging.ERROR,
        **kwargs,
    )
    try:
        client = Client(cluster)
        if cfg.min_jobs is not None or cfg.max_jobs is not None:
            cluster.adapt(minimum_jobs=cfg.min_jobs or 0, maximum_jobs=cfg.max_jobs)
            log(
                f"{cfg.kind}: adaptive, {cfg.min_jobs or 0} to "
                f"{cfg.max_jobs or 'any number of'} worker jobs"
            )
        else:
            cluster.scale(jobs=cfg.batch_jobs())
        _await_workers(client, cluster, cfg, log)
    except BaseException:
        cluster.close()
        raise
    return client


def _await_workers(client: Any, cluster: Any, cfg: ClusterConfig, log) -> None:
    """Wait for the first batch worker, saying which jobs are queued meanwhile.

    An adaptive cluster with no minimum starts jobs only once there is work, so
    it is not waited for.
    """
    if (cfg.min_jobs is not None or cfg.max_jobs is not None) and not cfg.min_jobs:
        return
    limit = parse_duration(cfg.startup_timeout) if cfg.startup_timeout else None
    start = last = time.monotonic()
    told: set[str] = set()
    while not client.scheduler_info(n_workers=-1)["workers"]:
        jobs = sorted(str(j.job_id) for j in cluster.workers.values() if j.job_id)
        if jobs and set(jobs) - told:
            log(f"{cfg.kind}: submitted worker jobs {', '.join(jobs)}")
            told |= set(jobs)
        now = time.monotonic()
        if limit is not None and now - start > limit:
            msg = (
                f"no Dask worker joined within {cfg.startup_timeout}: {cfg.kind} jobs "
                f"{', '.join(jobs) or '(none submitted)'} are still queued or "
                "failed to start; see their logs"
                + (f" in {cfg.log_directory}" if cfg.log_directory else "")
            )
            raise ClusterError(msg)
        if now - last > 60:
            log(f"{cfg.kind}: still waiting for a worker ({now - start:.0f} s)")
            last = now
        time.sleep(0.5)


@contextmanager
def connect(cfg: ClusterConfig | Mapping[str, Any] | None = None, log=None) -> Iterator:
    """A client for ``cfg`` (see `open_client`), closed with its cluster on exit.

    Examples
    --------
    >>> with connect({"n_workers": 1, "processes": False,
    ...               "dashboard_address": ":0"}) as client:
    ...     client.submit(sum, [1, 2]).result()
    3
    """
    client = open_client(cfg, log)
    try:
        yield client
    finally:
        cluster = getattr(client, "cluster", None)
        client.close()
        if cluster is not None:
            cluster.close()


def describe(cfg: ClusterConfig) -> str:
    """One line naming where a run's workers come from."""
    if cfg.kind == "scheduler":
        return f"the Dask scheduler at {cfg.address}"
    if cfg.kind in BATCH_KINDS:
        return (
            f"{cfg.kind} jobs of {cfg.batch_value('cores')} cores and "
            f"{cfg.batch_value('memory')} ({cfg.worker_processes()} worker(s) each)"
        )
    return "a local cluster"
