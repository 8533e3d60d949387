"""Zarr v3 image stores with geometry, readable by OME-Zarr (NGFF 0.5) viewers.

Layout: a store is a Zarr group; each image is a sub-group holding one array ``0``
and NGFF ``multiscales`` attributes (axes, voxel scale), plus sciimg's own attributes
with what NGFF cannot say yet (the full affine, the gradient table, axis names).

NGFF wants non-spatial axes first and ``z, y, x`` last, which is the reverse of
NIfTI's ``x, y, z, volume``. Arrays are therefore stored with their axes reversed
— for NIfTI's Fortran-ordered voxels that is the very same byte order — and turned
back when read, so Python code always sees NIfTI order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from sciimg._version import __version__
from sciimg.errors import InputError
from sciimg.io._atomic import remove, replace_path, temporary_sibling
from sciimg.io._chunks import chunks_for
from sciimg.io._gradients import make_gtab
from sciimg.io._image import Image
from sciimg.io._registry import register_reader

__all__ = ["ZarrReader", "ZarrStoreWriter", "open_zarr", "store_attrs", "write_zarr"]

_SPACE = ("x", "y", "z")


def _ngff_axes(
    dims: tuple[str, ...], space_unit: str = "millimeter"
) -> list[dict[str, str]]:
    axes, seen_channel = [], False
    for name in reversed(dims):
        if name in _SPACE:
            axes.append({"name": name, "type": "space", "unit": space_unit})
        elif name == "time":
            axes.append({"name": name, "type": "time"})
        elif not seen_channel:
            axes.append({"name": name, "type": "channel"})
            seen_channel = True
        else:
            axes.append({"name": name})  # NGFF allows one custom-typed axis
    # NGFF orders time, then channel/custom, then space.
    rank = {"time": 0, "channel": 1, None: 1, "space": 2}
    return sorted(axes, key=lambda a: rank[a.get("type")])


def _image_attrs(name: str, image: Image) -> dict[str, Any]:
    zooms = dict(zip(_SPACE, image.zooms, strict=False))
    scale = [float(zooms.get(d, 1.0)) for d in reversed(image.dims)]
    sciimg = {
        "dims": list(image.dims),
        "affine": image.affine.tolist(),
        "zooms": list(image.zooms),
        "source": image.source,
        "attrs": image.attrs,
    }
    if image.gtab is not None:
        sciimg["bvals"] = image.gtab.bvals.tolist()
        sciimg["bvecs"] = image.gtab.bvecs.tolist()
    return {
        "ome": {
            "version": "0.5",
            "multiscales": [
                {
                    "name": name,
                    # Sky images measure space in arcseconds, say so.
                    "axes": _ngff_axes(
                        image.dims, image.attrs.get("space_unit", "millimeter")
                    ),
                    "datasets": [
                        {
                            "path": "0",
                            "coordinateTransformations": [
                                {"type": "scale", "scale": scale}
                            ],
                        }
                    ],
                }
            ],
        },
        "sciimg": sciimg,
    }


class ZarrStoreWriter:
    """Build a store under a temporary name; it appears under its real name on commit.

    Parameters
    ----------
    path : str or Path
        The final store, e.g. ``out/sub-01.zarr``.
    attrs : dict, optional
        Store-level attributes (provenance), saved under ``sciimg``.
    budget : int or str, optional
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
        budget: int | str | None = None,
    ) -> None:
        import zarr

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = temporary_sibling(self.path)
        self.budget = budget
        self.root = zarr.open_group(self.tmp, mode="w", zarr_format=3)
        self.root.attrs["sciimg"] = {"version": __version__, **dict(attrs or {})}

    def add(self, name: str, image: Image, *, chunks: Any = None):
        """Create image group ``name``; return ``(voxels, zarr array)`` to store."""

        data = image.data.transpose(tuple(reversed(range(image.data.ndim))))
        if chunks is None:
            chunks = chunks_for(data.shape, data.dtype, budget=self.budget)
        data = data.rechunk(chunks)
        group = self.root.create_group(name)
        group.attrs.update(_image_attrs(name, image))
        target = group.create_array(
            "0",
            shape=data.shape,
            dtype=data.dtype,
            chunks=tuple(c[0] for c in data.chunks),
            dimension_names=list(reversed(image.dims)),
            fill_value=0,
        )
        return data, target

    def store_all(self, images: Mapping[str, Image]):
        """Create every image group; return the lazy writes of their voxels.

        The writes are dask arrays that compute to nothing; compute them together
        (one ``dask.compute`` or ``client.compute`` call) so that work they share,
        such as a tensor fit behind several maps, is done once.
        """
        import dask.array as da

        pairs = [self.add(name, image) for name, image in images.items()]
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
    budget: int | str | None = None,
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

    writer = ZarrStoreWriter(path, attrs=attrs, budget=budget)
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
    data = arr.transpose(tuple(reversed(range(arr.ndim))))
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
