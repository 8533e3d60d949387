"""Local worker processes forked from one process that has imported once.

Dask starts each worker of a local cluster with ``spawn``: a new interpreter that
imports NumPy and distributed, then, during its first tasks, what the pipeline's
tasks need (astropy, reproject, the numba kernels, ...). Every worker pays that
again, about a second of CPU each, and the first tasks wait for it. With
multiprocessing's ``forkserver`` method, one server process imports all of it
once and every worker is a fork of that server. sciimg starts the server as
soon as a run knows its items, so that the imports overlap with the run's
planning instead of following it.

A forked worker has the environment the server was started with, not the one
of the moment it is forked. The server is therefore used only while this
process's environment is still the one it was started with; once it changed
(a notebook that sets a variable between runs), the workers are spawned, as
Dask does by default. A start method the user configured is left alone.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Iterator, Sequence
from typing import Any

__all__ = [
    "METHOD_KEY",
    "start_method",
    "warm_worker_server",
    "workers_ignore_ctrl_c",
]

logger = logging.getLogger(__name__)

#: Dask's key for how worker processes are started.
METHOD_KEY = "distributed.worker.multiprocessing-method"
_PRE_SPAWN = "distributed.nanny.pre-spawn-environ"

#: The environment the server was started with (less the variables Dask sets
#: before starting workers), or None before it is started.
_started_with: dict[str, str] | None = None


def _pre_spawn_environ() -> dict[str, str]:
    """What Dask's nanny puts in the environment before starting a worker
    (the thread limits of native libraries, ...), with Dask's semantics: a
    variable already set in this process keeps its value; None unsets."""
    import dask

    env = {
        k: os.environ.get(k, str(v))
        for k, v in dask.config.get(_PRE_SPAWN, {}).items()
        if v is not None
    }
    # As the nanny does for the workers it spawns: one hash seed for all of
    # them. Forks share the server's seed, so it must be set when it starts.
    if env.get("PYTHONHASHSEED") in (None, "0"):
        env["PYTHONHASHSEED"] = "6640"
    return env


def _environ_now(pre_spawn: dict[str, str]) -> dict[str, str]:
    # Dask's nanny writes its variables into this process's environment when it
    # starts a worker: they do not count as a change.
    return {k: v for k, v in os.environ.items() if k not in pre_spawn}


@contextlib.contextmanager
def _environ(extra: dict[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def workers_ignore_ctrl_c() -> Iterator[None]:
    """Start worker processes with SIGINT ignored (they inherit it).

    Ctrl-C in a terminal reaches every process of the foreground group: the
    workers would die mid-task with tracebacks of their own, before this
    process could stop the run in order. They are stopped when the cluster is
    closed. Forks of the server inherit the server's disposition, so the server
    is started with it; spawned workers need it while they are started.

    Examples
    --------
    >>> import signal
    >>> with workers_ignore_ctrl_c():
    ...     signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    True
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, handler)


def _applies(cluster: Any) -> bool:
    """A local cluster of worker processes, on a system with ``forkserver``,
    whose start method the user did not choose."""
    import dask

    if cluster.kind != "local" or cluster.processes is False:
        return False
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return False
    defaults = dask.config.merge(*dask.config.defaults)
    return dask.config.get(METHOD_KEY, None) == dask.config.get(
        METHOD_KEY, None, config=defaults
    )


def _own_config(cluster: Any) -> dict[str, Any]:
    from sciimg.pipeline._own_settings import own_cluster_config

    # The settings sciimg's clusters start their workers with (glibc's own
    # malloc settings among them) are those the server must start with.
    return own_cluster_config(getattr(cluster, "profile", False))


def start_method(cluster: Any) -> str | None:
    """``"forkserver"`` if the workers of ``cluster`` (a ``cluster:`` section)
    are to be forked from the server `warm_worker_server` started, else None
    (Dask's own start method).

    Examples
    --------
    >>> from sciimg.pipeline.cluster_config import ClusterConfig
    >>> start_method(ClusterConfig(kind="local", processes=False)) is None
    True
    """
    import dask

    if _started_with is None or not _applies(cluster):
        return None
    with dask.config.set(_own_config(cluster)):
        same = _started_with == _environ_now(_pre_spawn_environ())
    return "forkserver" if same else None


def warm_worker_server(cluster: Any, modules: Sequence[str] = ()) -> str | None:
    """Start, in the background, the process that the workers of ``cluster``
    will be forked from, with distributed and ``modules`` imported in it.

    It returns at once; the server imports while the caller goes on. Nothing is
    started for a cluster this does not apply to (see the module's notes), and
    a server that cannot be started leaves Dask's own start method.

    Parameters
    ----------
    cluster : ClusterConfig
        The run's ``cluster:`` section.
    modules : sequence of str
        What the pipeline's tasks import; one that fails to import is skipped.

    Returns
    -------
    str or None
        The start method the run's workers are to use (`start_method`).

    Examples
    --------
    >>> from sciimg.pipeline.cluster_config import ClusterConfig
    >>> warm_worker_server(ClusterConfig(kind="slurm", memory="8GB")) is None
    True
    """
    global _started_with
    if not _applies(cluster):
        return None
    if _started_with is not None:
        return start_method(cluster)
    import multiprocessing

    import dask
    import distributed.utils

    with dask.config.set(_own_config(cluster)):
        pre_spawn = _pre_spawn_environ()
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["distributed", *modules])
    # On its first use of the context, distributed imports its optional
    # packages (pandas among them, 0.4 s) in this process only to list them for
    # the server's preload; the server started here has its own list already.
    distributed.utils._forkserver_preload_set = True
    try:
        with _environ(pre_spawn), workers_ignore_ctrl_c():
            from multiprocessing import forkserver

            forkserver.ensure_running()
    except OSError as exc:
        logger.warning("worker processes will be spawned: %s", exc)
        return None
    _started_with = _environ_now(pre_spawn)
    return "forkserver"
