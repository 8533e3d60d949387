"""Stores of images and stores of stores (collections), walked and built.

The astronomy pipeline writes collections, ``calexp.zarr/<exposure>/<plane>`` and
``coadd.zarr/<patch>/<plane>``: each member is a store of its own, with its own
store-level attributes. :func:`ingest_files` writes a multi-extension FITS file
the same way. Walking goes through the store readers, so it sees stores as they
do.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from sciimg import __version__
from sciimg.errors import InputError
from sciimg.io._fits import fits_stem, is_fits, open_fits_images
from sciimg.io._gradients import image_stem
from sciimg.io._image import Image
from sciimg.io._registry import open_image
from sciimg.io._zarr import ZarrStoreWriter, image_names

__all__ = ["ingest_files", "is_zarr_store", "store_members"]

Kind = Literal["image", "store"]


def is_zarr_store(path: str | Path) -> bool:
    """Whether ``path`` is a Zarr (v3) group: a store, a member or an image group.

    Examples
    --------
    >>> is_zarr_store("/nonexistent.zarr")
    False
    """
    path = Path(path)
    return path.is_dir() and (path / "zarr.json").is_file()


def store_members(path: str | Path) -> dict[str, Kind]:
    """The members of a store, by name: ``"image"`` or ``"store"`` (of images).

    An image group holds one image; a member store holds image groups (a
    patch's image, variance, mask) and store-level attributes of its own.

    Examples
    --------
    >>> import dask, dask.array as da, numpy as np, tempfile, os
    >>> img = Image(da.zeros((4, 4)), np.eye(4), ("x", "y"), (1.0, 1.0))
    >>> w = ZarrStoreWriter(os.path.join(tempfile.mkdtemp(), "c.zarr"))
    >>> _ = dask.compute(*w.store_all({"a/image": img, "a/mask": img, "b": img}))
    >>> w.root["a"].attrs["sciimg"] = {"patch": "a"}  # a member store's own
    >>> store_members(w.commit())
    {'a': 'store', 'b': 'image'}
    """
    path = Path(path)
    return {
        name: "store" if image_names(path / name) else "image"
        for name in sorted(image_names(path))
    }


def _entries(
    files: Iterable[str | Path], chunk_memory: int | str | None
) -> dict[str, tuple[Path, dict[str, Image]]]:
    entries: dict[str, tuple[Path, dict[str, Image]]] = {}
    for path in map(Path, files):
        if is_fits(path):
            name, images = (
                fits_stem(path),
                open_fits_images(path, chunk_memory=chunk_memory),
            )
        else:
            name = image_stem(path)
            images = {name: open_image(path, chunk_memory=chunk_memory)}
        if name in entries:
            raise InputError(
                path,
                f"would be stored as {name!r}, the name of {entries[name][0]} too; "
                "entries are named after their files, so rename one",
            )
        entries[name] = (path, images)
    return entries


def ingest_files(
    files: Iterable[str | Path],
    out: str | Path,
    *,
    chunk_memory: int | str | None = None,
) -> dict[str, list[str]]:
    """Convert image files into one new Zarr store, one entry per file.

    An entry is named after its file (``sub-01_dwi.nii.gz`` gives ``sub-01_dwi``).
    A file of one image is an image group; a FITS file of several image HDUs (an
    exposure's IMAGE, MASK, VARIANCE) is a store of one image group per HDU,
    named by lowercase EXTNAME, as ``calexp.zarr/<exposure>`` is. The store
    appears complete or not at all, replacing any at ``out``.

    Parameters
    ----------
    files : iterable of str or Path
        Image files (NIfTI, FITS, or any registered format).
    out : str or Path
        The store to write.
    chunk_memory : int or str, optional
        Bytes per chunk, e.g. ``"64MiB"``.

    Returns
    -------
    dict of str to list of str
        Each entry's images: ``[]`` for a single image group.

    Raises
    ------
    InputError
        A file cannot be read, or two files would have the same name.

    Examples
    --------
    >>> import os, tempfile, nibabel.testing
    >>> from sciimg.io import open_zarr
    >>> nii = os.path.join(nibabel.testing.data_path, "example4d.nii.gz")
    >>> out = os.path.join(tempfile.mkdtemp(), "in.zarr")
    >>> ingest_files([nii], out)
    {'example4d': []}
    >>> open_zarr(out, "example4d").shape
    (128, 96, 24, 2)
    """
    import dask

    entries = _entries(files, chunk_memory)
    images: dict[str, Image] = {}
    for name, (_, found) in entries.items():
        if len(found) == 1:
            images[name] = next(iter(found.values()))
        else:
            images.update({f"{name}/{hdu}": img for hdu, img in found.items()})
    writer = ZarrStoreWriter(out, chunk_memory=chunk_memory)
    try:
        writes = writer.store_all(images)
        for name, (path, found) in entries.items():
            if len(found) > 1:
                # The member is a store: its own attributes, as the pipeline's.
                writer.root[name].attrs["sciimg"] = {
                    "version": __version__,
                    "source": str(path),
                }
        dask.compute(*writes)
    except BaseException:
        writer.abort()
        raise
    writer.commit()
    return {
        name: list(found) if len(found) > 1 else []
        for name, (_, found) in entries.items()
    }
