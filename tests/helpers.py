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
