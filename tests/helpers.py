"""Small helpers shared by test modules."""

import subprocess
import sys
from pathlib import Path

import yaml


def dask_config_dir(where: Path, jobqueue: dict) -> dict[str, str]:
    """A dask configuration folder holding ``jobqueue.yaml``, as a site would
    write it; returns the environment variables that make dask read it."""
    import os

    folder = where / "dask-config"
    folder.mkdir()
    (folder / "jobqueue.yaml").write_text(yaml.safe_dump({"jobqueue": jobqueue}))
    return {**os.environ, "DASK_CONFIG": str(folder)}


def run_sciimg(*args, cwd=None, env=None, timeout=400) -> subprocess.CompletedProcess:
    """The ``sciimg`` command as a user runs it: a separate process, its output
    captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "sciimg", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )


_WITHOUT_PANDAS = '''\
"""Python as after a plain install of sciimg: pandas cannot be found."""
import sys
from importlib.machinery import PathFinder


class _WithoutPandas(PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.partition(".")[0] == "pandas":
            return None
        return super().find_spec(name, path, target)


sys.meta_path[:] = [_WithoutPandas if f is PathFinder else f for f in sys.meta_path]
'''


def without_pandas(where: Path) -> dict[str, str]:
    """Environment variables under which Python finds no pandas, as after a plain
    ``pip install sciimg`` (pandas comes only with the test and bench extras).

    A ``sitecustomize`` module hides it from the import system, so that
    ``import pandas`` fails and ``importlib.util.find_spec("pandas")`` is None,
    which is what astropy and pyarrow check."""
    import os

    folder = where / "without-pandas"
    folder.mkdir(exist_ok=True)
    (folder / "sitecustomize.py").write_text(_WITHOUT_PANDAS)
    paths = [str(folder), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
