"""Errors sciimg raises for bad input, with one-line messages naming the file."""

from __future__ import annotations

from pathlib import Path

__all__ = ["ConfigError", "FolderNotEmptyError", "InputError"]


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
