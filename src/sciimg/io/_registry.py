"""One front door for every image format: readers register, ``open_image`` picks.

Modelled on xarray's backend entrypoints: each reader says whether it can open a
path (magic bytes first, file name second), imports its heavy library only when it
opens something, and returns an :class:`~sciimg.io.Image`.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from sciimg.errors import InputError
from sciimg.io._image import Image

__all__ = ["Reader", "list_readers", "open_image", "read_magic", "register_reader"]


@runtime_checkable
class Reader(Protocol):
    """What a format reader provides."""

    name: str
    description: str

    def guess_can_open(self, path: Path, magic: bytes) -> bool:
        """Whether ``path`` (whose first bytes, un-gzipped, are ``magic``) is ours."""

    def open(self, path: Path, **kwargs: Any) -> Image:
        """Open ``path`` lazily; raise ``InputError`` if it is unusable."""


_READERS: dict[str, Reader] = {}


def register_reader(reader: Reader) -> Reader:
    """Add a reader to the registry (later registrations win on a name clash).

    Examples
    --------
    >>> from sciimg.io import list_readers
    >>> "nifti" in list_readers()
    True
    """
    if not isinstance(reader, Reader):
        msg = f"{reader!r} does not implement the Reader protocol"
        raise TypeError(msg)
    _READERS[reader.name] = reader
    return reader


def list_readers() -> dict[str, Reader]:
    """The registered readers by name."""
    return dict(_READERS)


def read_magic(path: Path, size: int = 352) -> bytes:
    """The first ``size`` bytes of a file, inflated first if it is gzip-compressed."""
    if path.is_dir():
        return b""
    with open(path, "rb") as f:
        head = f.read(size)
        if head[:2] != b"\x1f\x8b":
            return head
    try:
        with gzip.open(path, "rb") as g:
            return g.read(size)
    except (OSError, EOFError):
        return head  # a damaged gzip: let the readers judge the raw bytes


def open_image(path: str | Path, *, reader: str | None = None, **kwargs: Any) -> Image:
    """Open any supported image file lazily as an :class:`~sciimg.io.Image`.

    Parameters
    ----------
    path : str or Path
        A NIfTI file (``.nii``, ``.nii.gz``) or a Zarr image group written by sciimg.
    reader : str, optional
        Force a reader by name instead of guessing.
    **kwargs
        Passed to the reader (e.g. ``chunks``, ``chunk_memory``).

    Returns
    -------
    Image
        Lazy data (nothing is read yet) plus geometry.

    Raises
    ------
    InputError
        The file is missing or no reader can open it (the message lists those tried).

    Examples
    --------
    >>> import nibabel.testing, os
    >>> img = open_image(os.path.join(nibabel.testing.data_path, "example4d.nii.gz"))
    >>> img.shape, img.dims
    ((128, 96, 24, 2), ('x', 'y', 'z', 'volume'))
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "does not exist")
    if reader is not None:
        if reader not in _READERS:
            raise InputError(
                path, f"unknown reader {reader!r}; have {sorted(_READERS)}"
            )
        return _READERS[reader].open(path, **kwargs)
    try:
        magic = read_magic(path)
    except OSError as exc:
        raise InputError(path, f"cannot be read ({exc.strerror or exc})") from exc
    for candidate in _READERS.values():
        if candidate.guess_can_open(path, magic):
            return candidate.open(path, **kwargs)
    tried = ", ".join(_READERS)
    raise InputError(path, f"no reader recognises this file (tried: {tried})")
