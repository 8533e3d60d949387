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


#: Steps quick enough for runs through the command on a tiny phantom.
FAST_STEPS = {
    "mask": {"median_radius": 1, "numpass": 1, "dilate": 1},
    "denoise": {"method": "classic"},
    "dti": {},
}
#: Two single-threaded worker processes, as the demos use.
SMALL_CLUSTER = {"n_workers": 2, "threads_per_worker": 1, "memory_limit": "2GB"}


def synth_neuro(root: Path, subjects: int = 2) -> Path:
    """A tiny BIDS phantom (14×14×8, 6 directions per shell), made by the command."""
    made = run_sciimg(
        "synth", "neuro", root, "--subjects", subjects, "--shape", 14, 14, 8,
        "--directions", 6,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    return root


def synth_astro(root: Path) -> Path:
    """A tiny survey (2 visits of one 256×256 CCD), made by the command."""
    made = run_sciimg("synth", "astro", root, "--visits", 2, "--ccds", 1)
    assert made.returncode == 0, made.stderr
    return root


def write_config(path: Path, **raw) -> Path:
    """A pipeline YAML file, keys in the order given."""
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def neuro_config(where: Path, data: Path, output: Path, name="run.yaml", **changes):
    """A neuro config of quick steps on ``data``, with ``changes`` over it."""
    raw = {
        "pipeline": "neuro",
        "input": {"path": str(data)},
        "output": str(output),
        "steps": FAST_STEPS,
        "export": ["fa"],
        "cluster": SMALL_CLUSTER,
        **changes,
    }
    return write_config(where / name, **raw)


def astro_config(where: Path, data: Path, output: Path) -> Path:
    """An astro config with patches small enough for a two-visit survey."""
    return write_config(
        where / "astro.yaml",
        pipeline="astro",
        input={"path": str(data)},
        output=str(output),
        steps={"skymap": {"patch_size": 150, "border": 15}},
        cluster=SMALL_CLUSTER,
    )


def wait_for(predicate, timeout: float) -> bool:
    """Whether ``predicate()`` came true within ``timeout`` seconds."""
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def ctrl_c(args, when, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``sciimg ARGS`` and press Ctrl-C once ``when()`` is true: SIGINT to
    its whole process group, as a terminal sends it."""
    import os
    import signal

    proc = subprocess.Popen(
        [sys.executable, "-m", "sciimg", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert wait_for(when, timeout), "the moment to interrupt never came"
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
