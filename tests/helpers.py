"""Small helpers shared by test modules."""

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
