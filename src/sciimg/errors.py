"""Errors sciimg raises for problems a user can cause, each a one-line message
naming the file, key or address and the problem.

The ``sciimg`` command maps them to exit statuses: `ConfigError`, `InputError`,
`OutputError` and `ClusterError` stop a run before any item is computed (status
2); `ReportError` comes after the items were computed (status 1).
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "ClusterError",
    "ConfigError",
    "FolderNotEmptyError",
    "InputError",
    "OutputError",
    "ReportError",
    "RunInterrupted",
]


class _PathError(ValueError):
    """A problem with one file or folder: ``"<path>: <problem>"`` on one line."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = " ".join(str(problem).split())  # keep it on one line
        super().__init__(f"{self.path}: {self.problem}")

    def __reduce__(self):  # survive pickling between Dask workers and the client
        return (type(self), (self.path, self.problem))


class InputError(_PathError):
    """An input file cannot be used; the message names the file and the problem.

    Parameters
    ----------
    path : str or Path
        The offending file.
    problem : str
        What is wrong with it, in a few words.

    Examples
    --------
    >>> str(InputError("sub-01_dwi.nii.gz", "is 3-D; a 4-D diffusion series is needed"))
    'sub-01_dwi.nii.gz: is 3-D; a 4-D diffusion series is needed'
    """


class OutputError(_PathError):
    """An output cannot be written where the config puts it.

    Examples
    --------
    >>> str(OutputError("out/neuro", "is a file, not a folder"))
    'out/neuro: is a file, not a folder'
    """


class ReportError(_PathError):
    """The run's record (``run.json``) could not be written after the items ran.

    Examples
    --------
    >>> str(ReportError("out/run.json", "cannot be written (Is a directory)"))
    'out/run.json: cannot be written (Is a directory)'
    """


class ConfigError(ValueError):
    """A pipeline configuration is invalid; the message names the key."""


class ClusterError(RuntimeError):
    """The Dask cluster could not be reached or started.

    Examples
    --------
    >>> str(ClusterError("no Dask scheduler answered at tcp://10.0.0.1:8786"))
    'no Dask scheduler answered at tcp://10.0.0.1:8786'
    """


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C (SIGINT) after its record was saved.

    Parameters
    ----------
    report : RunReport
        What the run had done: finished items are kept, the others are marked
        ``interrupted``; also saved as ``run.json``.
    """

    def __init__(self, report) -> None:
        super().__init__("interrupted")
        self.report = report


class FolderNotEmptyError(FileExistsError):
    """An output folder holds files already, and overwriting was not asked for.

    Parameters
    ----------
    path : str or Path
        The folder.

    Examples
    --------
    >>> str(FolderNotEmptyError("data/astro"))
    'data/astro: is not empty; pass overwrite=True to write there'
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        super().__init__(
            f"{self.path}: is not empty; pass overwrite=True to write there"
        )

    def __reduce__(self):
        return (type(self), (self.path,))
