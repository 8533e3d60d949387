"""The folder a synthetic dataset goes to: new, empty, or overwritten on request."""

from __future__ import annotations

from pathlib import Path

from sciimg.errors import FolderNotEmptyError

__all__ = ["check_output_folder"]


def check_output_folder(out: Path, overwrite: bool) -> None:
    """Refuse to write into a file, or into a non-empty folder unless ``overwrite``.

    Raises
    ------
    FileExistsError
        ``out`` is a file.
    FolderNotEmptyError
        ``out`` holds files and ``overwrite`` is false.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> check_output_folder(pathlib.Path(tempfile.mkdtemp()), overwrite=False)
    """
    if out.exists() and not out.is_dir():
        msg = f"{out}: exists and is not a folder"
        raise FileExistsError(msg)
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FolderNotEmptyError(out)
