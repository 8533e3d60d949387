"""Getting a Dask client: a LocalCluster sized to the machine, or a running one."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

from sciimg.pipeline.config import ClusterConfig

__all__ = ["connect"]


@contextmanager
def connect(cfg: ClusterConfig | None = None) -> Iterator[object]:
    """A ``distributed.Client`` for ``cfg``, closed (with its cluster) on exit.

    Examples
    --------
    >>> from sciimg.pipeline.config import ClusterConfig
    >>> with connect(ClusterConfig(n_workers=1, processes=False,
    ...                            dashboard_address=":0")) as client:
    ...     client.submit(sum, [1, 2]).result()
    3
    """
    from distributed import Client, LocalCluster

    cfg = cfg or ClusterConfig()
    if cfg.scheduler:
        with Client(cfg.scheduler) as client:
            yield client
        return
    threads = cfg.threads_per_worker
    workers = cfg.n_workers or max(1, (os.cpu_count() or 1) // threads)
    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=threads,
            memory_limit=cfg.memory_limit,
            processes=cfg.processes,
            dashboard_address=cfg.dashboard_address,
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client
