"""GPU workers started on this machine: one per visible GPU, each seeing its own.

A batch job asks its batch system for one GPU (``cluster.gpus``), which then
sets ``CUDA_VISIBLE_DEVICES`` for it. A LocalCluster has no such help: without
a word, every worker would compute on the first GPU. So a local GPU run gets
one worker per GPU, and `PinGpu` makes worker ``i`` see GPU ``i`` only, before
the worker's first CUDA call (CUDA reads the variable once, when it starts).
"""

from __future__ import annotations

import os
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from sciimg.device import gpu_count
from sciimg.pipeline.cluster_config import ClusterConfig

__all__ = ["PinGpu", "local_gpu_cluster"]


def local_gpu_cluster(cfg: ClusterConfig) -> ClusterConfig:
    """``cfg`` with one worker per GPU of this machine unless it says how many.

    Examples
    --------
    >>> local_gpu_cluster(ClusterConfig(n_workers=3)).n_workers
    3
    """
    if cfg.n_workers is not None:
        return cfg
    return cfg.model_copy(update={"n_workers": max(1, gpu_count())})


class PinGpu(WorkerPlugin):
    """Worker ``i`` (by its name in a LocalCluster) sees GPU ``i % count``;
    a worker whose ``CUDA_VISIBLE_DEVICES`` is set already keeps it.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> env = {}
    >>> PinGpu(2, environ=env).setup(SimpleNamespace(name=3))
    >>> env
    {'CUDA_VISIBLE_DEVICES': '1'}
    """

    name = "sciimg-pin-gpu"

    def __init__(self, count: int, environ: Any = None) -> None:
        self.count = max(1, count)
        self.environ = environ

    def setup(self, worker: Any) -> None:
        environ = os.environ if self.environ is None else self.environ
        if "CUDA_VISIBLE_DEVICES" in environ:
            return
        try:
            rank = int(str(worker.name).rsplit("-", 1)[-1])
        except ValueError:
            return  # not a LocalCluster's worker: leave the choice to CUDA
        environ["CUDA_VISIBLE_DEVICES"] = str(rank % self.count)
