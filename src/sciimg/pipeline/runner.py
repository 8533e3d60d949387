"""Running a pipeline over all its items: ``run_pipeline``, the public entry.

The work is the engine's (`sciimg.pipeline.engine`), the same for every
pipeline: each item (a subject, an exposure, a sky patch) becomes one Dask
computation ending in the writes of its store, so items run side by side on
the cluster and a failure stays with its item. A store is written under a
temporary name and renamed when complete; an item whose recorded fingerprint
matches the config and the input files is skipped on the next run.
"""

from __future__ import annotations

from sciimg.pipeline._jobs import ItemResult
from sciimg.pipeline.config import PipelineConfig
from sciimg.pipeline.report import RunReport

__all__ = ["ItemResult", "RunReport", "run_pipeline"]


def run_pipeline(
    cfg: PipelineConfig,
    *,
    force: bool = False,
    client=None,
    progress: bool = False,
    log=print,
) -> RunReport:
    """Run a pipeline over all subjects of its input.

    Parameters
    ----------
    cfg : PipelineConfig
        From :func:`~sciimg.pipeline.load_config`.
    force : bool
        Recompute subjects whose outputs are already complete for this config.
    client : distributed.Client, optional
        Use this client; by default one is made from ``cfg.cluster`` (and closed).
    progress : bool
        Show a progress bar of the tasks.
    log : callable
        Where to say what is going on (the dashboard address, for one).

    Returns
    -------
    RunReport
        Also saved as ``<output>/run.json``. An item that failed is in it with its
        error; the others are not affected.

    Raises
    ------
    ConfigError, InputError
        Before anything is written: ``input.path`` does not exist or holds no
        items, ``output`` is a file.
    OutputError
        The output folder cannot be created or written.
    ClusterError
        The cluster could not be reached or started.
    RunInterrupted
        On Ctrl-C, once the unfinished stores are removed and ``run.json`` says
        which items were ``interrupted``; its ``report`` is that record.
    ReportError
        ``run.json`` could not be written (the items' stores are).

    Examples
    --------
    >>> from sciimg.pipeline import load_config
    >>> cfg = load_config("pipelines/neuro/demo.yaml")  # doctest: +SKIP
    >>> report = run_pipeline(cfg)                       # doctest: +SKIP
    """
    from sciimg.pipeline.engine import run

    return run(cfg, force=force, client=client, progress=progress, log=log)
