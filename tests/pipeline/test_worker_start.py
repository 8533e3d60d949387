"""Local workers forked from one process that imported the pipeline's modules
once: when it applies, that the workers really are its forks with Dask's
worker environment, and that a changed environment falls back to spawning."""

import os
import subprocess
import sys
import textwrap

import dask
import pytest

from sciimg.pipeline.cluster_config import ClusterConfig
from sciimg.pipeline.registry import get_pipeline
from sciimg.pipeline.worker_start import METHOD_KEY, warm_worker_server

pytestmark = pytest.mark.skipif(
    sys.platform == "win32", reason="no forkserver start method on Windows"
)

#: Dask's worker environment limits native thread pools to one thread.
ONE_THREAD = {
    k: "1" for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
}


@pytest.mark.parametrize(
    "cluster",
    [
        ClusterConfig(kind="local", processes=False),
        ClusterConfig(kind="slurm", memory="8GB"),
        ClusterConfig(kind="scheduler", address="tcp://127.0.0.1:8786"),
    ],
    ids=["threads", "batch", "scheduler"],
)
def test_nothing_is_started_for_workers_sciimg_does_not_start(cluster):
    assert warm_worker_server(cluster, ["sciimg.io"]) is None


def test_a_start_method_the_user_chose_is_left_alone():
    with dask.config.set({METHOD_KEY: "spawn-or-else"}):
        assert warm_worker_server(ClusterConfig(kind="local")) is None


def _python(code: str, env=None, drop=()) -> str:
    environ = {k: v for k, v in os.environ.items() if k not in drop}
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env={**environ, **(env or {})},
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip()


def test_workers_are_forks_of_the_warm_process_with_dasks_worker_environment():
    """Forks of the server that imported the modules, with Dask's thread limits
    and Ctrl-C ignored (the run stops them in order)."""
    # In a fresh interpreter: the server is one per process, for its life.
    out = _python(
        """
        import os, signal, sys
        from sciimg.pipeline.cluster import open_client
        from sciimg.pipeline.cluster_config import ClusterConfig
        from sciimg.pipeline.worker_start import start_method, warm_worker_server

        def look():
            return (os.getppid(), "sciimg.io" in sys.modules,
                    os.environ.get("OMP_NUM_THREADS"),
                    signal.getsignal(signal.SIGINT) is signal.SIG_IGN)

        if __name__ == "__main__":
            cfg = ClusterConfig(kind="local", n_workers=1, threads_per_worker=1,
                                dashboard_address=None)
            assert start_method(cfg) is None
            assert warm_worker_server(cfg, ["sciimg.io"]) == "forkserver"
            os.environ["SCIIMG_SOME_SETTING"] = "1"
            changed = start_method(cfg)
            del os.environ["SCIIMG_SOME_SETTING"]
            assert start_method(cfg) == "forkserver"
            client = open_client(cfg)
            try:
                (parent, preloaded, omp, no_ctrl_c), = client.run(look).values()
            finally:
                client.shutdown()
            # A worker Dask spawns is a child of this process (its nanny's).
            print(changed, parent != os.getpid(), preloaded, omp, no_ctrl_c)
        """,
        drop=ONE_THREAD,
    )
    assert out.splitlines()[-1] == "None True True 1 True"


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux /proc")
@pytest.mark.parametrize("name", ["astro", "neuro", "images"])
def test_worker_modules_import_without_starting_a_thread(name):
    """A fork has only the thread that forked: a module that started one at
    import (a native pool) would leave its forks with a pool they cannot use."""
    modules = get_pipeline(name).worker_modules
    assert modules
    out = _python(
        f"""
        import importlib, os
        for m in {list(modules)!r}:
            importlib.import_module(m)
        print(len(os.listdir("/proc/self/task")))
        """,
        env=ONE_THREAD,
    )
    assert out == "1"
