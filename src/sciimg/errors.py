"""Errors sciimg raises for bad input, with one-line messages naming the file."""

from __future__ import annotations

from pathlib import Path

__all__ = ["ConfigError", "InputError"]


class InputError(ValueError):
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

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = " ".join(str(problem).split())  # keep it on one line
        super().__init__(f"{self.path}: {self.problem}")

    def __reduce__(self):  # survive pickling between Dask workers and the client
        return (type(self), (self.path, self.problem))


class ConfigError(ValueError):
    """A pipeline configuration is invalid; the message names the key."""
