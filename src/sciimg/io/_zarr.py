"""Zarr v3 image stores with geometry, readable by OME-Zarr (NGFF 0.5) tools.

Layout. A store is a Zarr group holding images; each image is a sub-group with
one array ``0`` (a multiscale image of one level). A store is also an NGFF
``bioformats2raw.layout`` collection: its ``ome`` attributes are
``{"version": "0.5", "bioformats2raw.layout": 3}`` and its group ``OME`` lists
the paths of its images in ``ome.series``. That is the one way NGFF 0.5 has to
say that a group holds several images (plates and wells are for screens, labels
for segmentations of one image). A group of stores (``calexp.zarr``) is marked
the same way, and its series lists the images of all its stores
(``<exposure>/image``...).

Axes. NGFF wants ``time``, then one ``channel`` axis, then ``z, y, x``, which is
the reverse of NIfTI's ``x, y, z, volume``. Arrays are stored with their axes
reversed — for NIfTI's Fortran-ordered voxels that is the very same byte order —
and turned back when read, so Python code always sees NIfTI order. An image with
more non-spatial axes than NGFF allows (the ``component`` and ``eigenvector``
axes of tensor eigenvectors) has them stored as one ``channel`` axis, their
product long, always one chunk; reading splits it again. The stored layout is
recorded as ``sciimg.stored_axes`` (the image axes each stored axis holds,
slowest first) with ``sciimg.shape``. An image NGFF cannot describe at all
(fewer than two of ``x, y, z``) is stored the same way without ``ome``
attributes, and is not listed in the series.

Geometry. Each image's ``coordinateTransformations`` are a ``scale`` (the voxel
size, 1 on non-space axes) then a ``translation``: the world position of the
first voxel's centre, ``affine[:3, 3]``, per space axis in that axis' unit
(millimetres; for sky images, whose affine is in degrees, arcseconds), 0 on
non-space axes. Rotations, shears and flips (a negative step along an axis)
cannot be said with a scale and a translation: the full affine, with the
gradient table, the image's axis names and its attributes, is kept in the
group's ``sciimg`` attributes, which are what :func:`open_zarr` reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from sciimg import __version__
from sciimg.errors import InputError
from sciimg.io._atomic import remove, replace_path, temporary_sibling
from sciimg.io._gradients import make_gtab
from sciimg.io._image import Image
from sciimg.io._ngff import (
    StoredOrder,
    collection_attrs,
    from_stored,
    image_ome,
    plan_axes,
    series_attrs,
    stored_chunks,
    stored_shape,
    to_store,
)
from sciimg.io._registry import register_reader

__all__ = [
    "ZarrReader",
    "ZarrStoreWriter",
    "image_names",
    "iter_images",
    "open_zarr",
    "store_attrs",
    "write_zarr",
]

SERIES_GROUP = "OME"  # where a bioformats2raw collection lists its images


def _image_attrs(name: str, image: Image) -> dict[str, Any]:
    groups, ngff = plan_axes(image.dims)
    sciimg = {
        "dims": list(image.dims),
        "shape": list(image.shape),
        "stored_axes": groups,
        "affine": image.affine.tolist(),
        "zooms": list(image.zooms),
        "source": image.source,
        "attrs": image.attrs,
    }
    if image.gtab is not None:
        sciimg["bvals"] = image.gtab.bvals.tolist()
        sciimg["bvecs"] = image.gtab.bvecs.tolist()
    attrs: dict[str, Any] = {"sciimg": sciimg}
    if ngff:
        attrs["ome"] = image_ome(name, image, groups)
    return attrs


def _dimension_names(attrs: Mapping[str, Any]) -> list[str]:
    if "ome" in attrs:
        return [a["name"] for a in attrs["ome"]["multiscales"][0]["axes"]]
    dims = attrs["sciimg"]["dims"]
    return ["_".join(dims[i] for i in g) for g in attrs["sciimg"]["stored_axes"]]


class ZarrStoreWriter:
    """Build a store under a temporary name; it appears under its real name on commit.

    The store is an NGFF collection of its images (see the module docstring).

    Parameters
    ----------
    path : str or Path
        The final store, e.g. ``out/sub-01.zarr``.
    attrs : dict, optional
        Store-level attributes (provenance), saved under ``sciimg``.
    chunk_memory : int or str, optional
        Bytes per stored chunk.

    Examples
    --------
    >>> import dask, dask.array as da, numpy as np, tempfile, os
    >>> img = Image(da.ones((4, 4, 2), dtype="f4"), np.eye(4), ("x", "y", "z"),
    ...             (1.0, 1.0, 1.0))
    >>> w = ZarrStoreWriter(os.path.join(tempfile.mkdtemp(), "s.zarr"))
    >>> _ = dask.compute(*w.store_all({"ones": img}))
    >>> w.commit().name
    's.zarr'
    """

    def __init__(
        self,
        path: str | Path,
        *,
        attrs: Mapping[str, Any] | None = None,
        chunk_memory: int | str | None = None,
    ) -> None:
        import zarr

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = temporary_sibling(self.path)
        self.chunk_memory = chunk_memory
        # Attributes go in with each node's creation: every separate write of
        # metadata is a round trip through zarr's event loop and a file write.
        self.root = zarr.open_group(
            self.tmp,
            mode="w",
            zarr_format=3,
            attributes={
                "ome": collection_attrs(),
                "sciimg": {"version": __version__, **dict(attrs or {})},
            },
        )
        self.series: list[str] = []
        self.root.create_group(SERIES_GROUP, attributes={"ome": series_attrs([])})

    def add(self, name: str, image: Image, *, chunks: Any = None):
        """Create image group ``name``; return ``(voxels, zarr array)`` to store.

        ``chunks`` are those of the stored array (NGFF axis order); by default
        they follow the store's ``chunk_memory``. An axis that holds several of
        the image's axes is always one chunk.
        """
        pair = self._add(name, image, chunks)
        self._list_series()
        return pair

    def _add(self, name: str, image: Image, chunks: Any = None):
        if name == SERIES_GROUP:
            msg = f"{name!r} is where the store lists its images; name the image else"
            raise ValueError(msg)
        attrs = _image_attrs(name, image)
        groups = attrs["sciimg"]["stored_axes"]
        shape = stored_shape(image.shape, groups)
        dtype = image.data.dtype
        if chunks is None:
            chunks = stored_chunks(shape, dtype, groups, self.chunk_memory)
        data, chunk_shape, order = to_store(image.data, groups, chunks)
        group = self.root.create_group(name, attributes=attrs)
        target = group.create_array(
            "0",
            shape=shape,
            dtype=dtype,
            chunks=chunk_shape,
            dimension_names=_dimension_names(attrs),
            fill_value=0,
        )
        if "ome" in attrs:
            self.series.append(name)
        return data, target if order is None else StoredOrder(target, order)

    def _list_series(self) -> None:
        self.root[SERIES_GROUP].attrs["ome"] = series_attrs(self.series)

    def store_all(self, images: Mapping[str, Image]):
        """Create every image group; return the lazy writes of their voxels.

        The writes are dask arrays that compute to nothing; compute them together
        (one ``dask.compute`` or ``client.compute`` call) so that work they share,
        such as a tensor fit behind several maps, is done once.
        """
        import dask.array as da

        pairs = [self._add(name, image) for name, image in images.items()]
        self._list_series()
        stored = da.store(
            [p[0] for p in pairs], [p[1] for p in pairs], lock=False, compute=False
        )
        return list(stored) if isinstance(stored, tuple) else [stored]

    def update_attrs(self, attrs: Mapping[str, Any]) -> None:
        self.root.attrs["sciimg"] = {**self.root.attrs["sciimg"], **dict(attrs)}

    def commit(self) -> Path:
        """Rename the finished store into place (replacing an older one)."""
        replace_path(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Remove the unfinished store."""
        remove(self.tmp)


def write_zarr(
    path: str | Path,
    images: Mapping[str, Image],
    *,
    attrs: Mapping[str, Any] | None = None,
    chunk_memory: int | str | None = None,
) -> Path:
    """Compute and write images into a new Zarr store, atomically.

    Examples
    --------
    >>> import dask.array as da, numpy as np, tempfile, os
    >>> img = Image(da.arange(8.0).reshape(2, 2, 2), np.eye(4), ("x", "y", "z"),
    ...             (1.0, 1.0, 1.0))
    >>> out = write_zarr(os.path.join(tempfile.mkdtemp(), "a.zarr"), {"ramp": img})
    >>> float(open_zarr(out, "ramp").data.sum().compute())
    28.0
    """
    import dask

    writer = ZarrStoreWriter(path, attrs=attrs, chunk_memory=chunk_memory)
    try:
        dask.compute(*writer.store_all(images))
    except BaseException:
        writer.abort()
        raise
    return writer.commit()


def _open_group(path: Path):
    import zarr

    try:
        return zarr.open_group(path, mode="r")
    except (FileNotFoundError, ValueError, KeyError, TypeError) as exc:
        raise InputError(path, f"is not a Zarr group ({exc})") from exc


def _image_from_group(group, where: Path) -> Image:
    import dask.array as da

    meta = group.attrs.get("sciimg")
    if meta is None or "0" not in group:
        raise InputError(
            where, "is not a sciimg image group (no 'sciimg' attrs or '0')"
        )
    arr = da.from_zarr(group["0"])
    # Stores written before the layout was recorded hold the axes reversed.
    groups = meta.get("stored_axes") or [[i] for i in reversed(range(arr.ndim))]
    data = from_stored(arr, groups, meta.get("shape") or arr.shape[::-1])
    gtab = None
    if "bvals" in meta:
        gtab = make_gtab(
            np.asarray(meta["bvals"]), np.asarray(meta["bvecs"]), source=where
        )
    return Image(
        data,
        np.asarray(meta["affine"]),
        tuple(meta["dims"]),
        tuple(meta["zooms"]),
        gtab=gtab,
        source=meta.get("source"),
        attrs=dict(meta.get("attrs") or {}),
    )


def open_zarr(path: str | Path, name: str | None = None) -> Image:
    """Open one image of a sciimg Zarr store lazily.

    Parameters
    ----------
    path : str or Path
        The store (``sub-01.zarr``) or an image group inside it (``sub-01.zarr/fa``).
    name : str, optional
        The image inside the store; needed when ``path`` is the store.

    Examples
    --------
    See :func:`write_zarr`.
    """
    path = Path(path)
    group = _open_group(path)
    if name is not None:
        if name not in group:
            have = ", ".join(sorted(image_names(path))) or "none"
            raise InputError(path, f"has no image {name!r} (images: {have})")
        return _image_from_group(group[name], path / name)
    if "0" not in group:
        have = ", ".join(sorted(image_names(path))) or "none"
        raise InputError(path, f"is a store of several images; name one ({have})")
    return _image_from_group(group, path)


def image_names(path: str | Path) -> list[str]:
    """The image groups in a store."""
    group = _open_group(Path(path))
    return [k for k, g in group.groups() if "sciimg" in g.attrs]


def store_attrs(path: str | Path) -> dict[str, Any]:
    """The store-level ``sciimg`` attributes (provenance), or ``{}``."""
    return dict(_open_group(Path(path)).attrs.get("sciimg") or {})


class ZarrReader:
    """Registry entry for Zarr image groups written by sciimg."""

    name = "zarr"
    description = "Zarr v3 image group (sciimg / OME-Zarr layout)"

    def guess_can_open(self, path: Path, magic: bytes) -> bool:
        return path.is_dir() and (path / "zarr.json").is_file()

    def open(self, path: Path, **kwargs: Any) -> Image:
        return open_zarr(path, kwargs.get("name"))


def iter_images(path: str | Path) -> Iterable[tuple[str, Image]]:
    """``(name, image)`` for every image group in a store."""
    for name in image_names(path):
        yield name, open_zarr(path, name)


register_reader(ZarrReader())
