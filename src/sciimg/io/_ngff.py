"""How an Image is laid out on disk as an OME-Zarr (NGFF 0.5) image, and the
``ome`` metadata that says so.

NGFF 0.5 allows 2 or 3 ``space`` axes, at most one ``time`` axis and at most one
``channel`` (or custom) axis, ordered time, channel, then space (``z, y, x``).
sciimg's images use NIfTI order (``x, y, z``, then anything else) and may have
more non-spatial axes than that, such as the ``component`` and ``eigenvector``
axes of a tensor's eigenvectors. The stored layout is therefore described by
``stored_axes``: for each axis of the stored array, the image axes it holds,
slowest first. Usually each stored axis holds one image axis and the layout is
plain reversal (the very bytes of a Fortran-ordered NIfTI volume); when an image
has several non-spatial axes other than ``time``, they are held by one stored
``channel`` axis whose length is their product.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from sciimg.io._chunks import chunk_budget, chunks_for

if TYPE_CHECKING:
    import dask.array as da

    from sciimg.io._image import Image

__all__ = [
    "NGFF_VERSION",
    "StoredOrder",
    "collection_attrs",
    "from_stored",
    "image_ome",
    "is_collection",
    "is_image",
    "plan_axes",
    "series_attrs",
    "stored_chunks",
    "stored_shape",
    "to_store",
    "to_stored",
]

NGFF_VERSION = "0.5"
_SPACE = ("x", "y", "z")
# The affine is in the axis unit, except for sky images: their affine holds the
# WCS linear part in degrees while their axes are measured in arcseconds.
_AFFINE_TO_AXIS_UNIT = {"arcsecond": 3600.0}


def plan_axes(dims: Sequence[str]) -> tuple[list[list[int]], bool]:
    """The stored axes of an image with ``dims``, and whether NGFF can describe it.

    Examples
    --------
    >>> plan_axes(("x", "y", "z", "volume"))
    ([[3], [2], [1], [0]], True)
    >>> plan_axes(("x", "y", "z", "component", "eigenvector"))
    ([[4, 3], [2], [1], [0]], True)
    >>> plan_axes(("x",))
    ([[0]], False)
    """
    space = [i for i, d in enumerate(dims) if d in _SPACE]
    time = [i for i, d in enumerate(dims) if d == "time"]
    other = [i for i in range(len(dims)) if i not in space and i not in time]
    names = {dims[i] for i in space}
    valid = (
        names in ({"x", "y"}, {"x", "y", "z"})
        and len(names) == len(space)
        and len(time) <= 1
    )
    if not valid:
        return [[i] for i in reversed(range(len(dims)))], False
    # Reversed, as NIfTI's trailing axes vary slowest in a Fortran-ordered file.
    channel = [list(reversed(other))] if other else []
    spatial = sorted(space, key=lambda i: "zyx".index(dims[i]))
    return [[i] for i in time] + channel + [[i] for i in spatial], True


def stored_shape(shape: Sequence[int], groups: Sequence[Sequence[int]]) -> list[int]:
    """The shape of the stored array of an image of ``shape``.

    Examples
    --------
    >>> stored_shape((6, 5, 4, 3, 3), [[4, 3], [2], [1], [0]])
    [9, 4, 5, 6]
    """
    return [int(np.prod([shape[i] for i in g], dtype=np.int64)) for g in groups]


def _merged(groups: Sequence[Sequence[int]]) -> list[int]:
    return [k for k, g in enumerate(groups) if len(g) > 1]


def to_stored(data: da.Array, groups: Sequence[Sequence[int]]) -> da.Array:
    """The image's voxels in stored order, merged axes flattened (C order).

    Examples
    --------
    >>> import dask.array as da
    >>> to_stored(da.zeros((6, 5, 4, 3, 3)), [[4, 3], [2], [1], [0]]).shape
    (9, 4, 5, 6)
    """
    shape = data.shape
    order = [i for g in groups for i in g]
    data = data.transpose(order)
    if not _merged(groups):
        return data
    # Whole chunks on the merged axes make the reshape one task per block.
    merged = {i for g in groups if len(g) > 1 for i in g}
    data = data.rechunk({k: -1 for k, i in enumerate(order) if i in merged})
    return data.reshape(stored_shape(shape, groups))


class StoredOrder:
    """A stored array written in its image's axis order.

    Each block is transposed in the task that writes it: a separate transpose
    task per chunk is Dask overhead (about a millisecond) for a view.

    Examples
    --------
    >>> out = np.zeros((3, 2))
    >>> StoredOrder(out, [1, 0])[0:2, 1:3] = np.array([[1, 2], [3, 4]])
    >>> out.tolist()
    [[0.0, 0.0], [1.0, 3.0], [2.0, 4.0]]
    """

    def __init__(self, array: Any, order: Sequence[int]) -> None:
        self.array, self.order = array, tuple(int(i) for i in order)
        self.shape = tuple(array.shape[k] for k in np.argsort(self.order))
        self.dtype, self.ndim = array.dtype, len(self.order)

    def __dask_tokenize__(self) -> tuple:
        # Dask names the writes after their target; without this it would
        # tokenize the Zarr array by pickling it (a third of a store's setup).
        from dask.base import tokenize

        path = getattr(self.array, "store_path", None)
        where = tokenize(self.array) if path is None else str(path)
        return (type(self).__name__, where, self.shape, str(self.dtype), self.order)

    def __setitem__(self, index: tuple[slice, ...], value: Any) -> None:
        stored = tuple(index[i] for i in self.order)
        self.array[stored] = value.transpose(self.order)


def to_store(
    data: da.Array, groups: Sequence[Sequence[int]], chunks: Any
) -> tuple[da.Array, tuple[int, ...], list[int] | None]:
    """What a store writes of an image: the voxels, the stored array's chunk
    shape, and the axis order the writes transpose by (None: the voxels are
    in stored order already).

    Without merged axes the voxels stay in image order, chunked as the stored
    array (`StoredOrder` transposes them as they are written); with them, they
    are `to_stored`'s, rechunked.

    Examples
    --------
    >>> import dask.array as da
    >>> data, chunk, order = to_store(da.zeros((6, 4)), [[1], [0]], (2, 3))
    >>> data.chunks, chunk, order
    (((3, 3), (2, 2)), (2, 3), [1, 0])
    """
    order = [g[0] for g in groups]
    if _merged(groups):
        stored = to_stored(data, groups).rechunk(chunks)
        stored = stored.rechunk(dict.fromkeys(_merged(groups), -1))
        return stored, tuple(c[0] for c in stored.chunks), None
    if _is_normal(chunks, len(order)):
        norm = tuple(tuple(int(n) for n in c) for c in chunks)
    else:  # the chunks the stored array would have, from a view never computed
        norm = data.transpose(order).rechunk(chunks).chunks
    data = data.rechunk({i: norm[k] for k, i in enumerate(order)})
    return data, tuple(c[0] for c in norm), order


def _is_normal(chunks: Any, ndim: int) -> bool:
    """Whether ``chunks`` are block sizes per axis already (as `stored_chunks`'s)."""
    return (
        isinstance(chunks, tuple)
        and len(chunks) == ndim
        and all(isinstance(c, tuple) and c for c in chunks)
    )


def from_stored(
    arr: da.Array, groups: Sequence[Sequence[int]], shape: Sequence[int]
) -> da.Array:
    """The image's voxels (NIfTI order) from the stored array.

    Examples
    --------
    >>> import dask.array as da
    >>> from_stored(da.zeros((9, 4, 5, 6)), [[4, 3], [2], [1], [0]],
    ...             (6, 5, 4, 3, 3)).shape
    (6, 5, 4, 3, 3)
    """
    order = [i for g in groups for i in g]
    if _merged(groups):
        arr = arr.reshape([shape[i] for i in order])
    return arr.transpose(tuple(int(k) for k in np.argsort(order)))


def stored_chunks(
    shape: Sequence[int],
    dtype: np.dtype | str,
    groups: Sequence[Sequence[int]],
    chunk_memory: int | str | None = None,
) -> tuple[tuple[int, ...], ...]:
    """Chunks of the stored array within ``chunk_memory``, merged axes in one piece.

    A merged axis split into chunks would make reading back (splitting the axis
    again) a rechunk of the whole array rather than one task per chunk.

    Examples
    --------
    >>> stored_chunks((9, 64, 64, 64), "f4", [[4, 3], [2], [1], [0]], "64KiB")[0]
    (9,)
    """
    merged = _merged(groups)
    if not merged:
        return chunks_for(shape, dtype, chunk_memory=chunk_memory)
    (m,) = merged  # plan_axes merges into one axis at most
    limit = max(chunk_budget(chunk_memory) // shape[m], np.dtype(dtype).itemsize)
    rest = chunks_for(
        [1 if k == m else n for k, n in enumerate(shape)], dtype, chunk_memory=limit
    )
    return tuple((shape[m],) if k == m else c for k, c in enumerate(rest))


def _axis(image: Image, group: Sequence[int], unit: str) -> dict[str, str]:
    names = [image.dims[i] for i in group]
    if len(names) == 1 and names[0] in _SPACE:
        return {"name": names[0], "type": "space", "unit": unit}
    if names == ["time"]:
        return {"name": "time", "type": "time"}
    return {"name": "_".join(names), "type": "channel"}


def image_ome(name: str, image: Image, groups: Sequence[Sequence[int]]) -> dict:
    """The ``ome`` attributes of an image group: one multiscale of one level.

    ``scale`` is the voxel size of each space axis (1 elsewhere); ``translation``
    is the world position of the first voxel's centre, ``affine[:3, 3]``, in the
    axis unit (0 on non-space axes). Rotations, shears and flips of the affine
    cannot be said in NGFF 0.5 and are kept in sciimg's attributes only.

    Examples
    --------
    >>> import dask.array as da
    >>> from sciimg.io._image import Image
    >>> affine = np.diag([2.0, 2.0, 2.0, 1.0])
    >>> affine[:3, 3] = [-90.0, -126.0, -72.0]
    >>> img = Image(da.zeros((4, 4, 2)), affine, ("x", "y", "z"), (2.0, 2.0, 2.0))
    >>> ome = image_ome("fa", img, plan_axes(img.dims)[0])
    >>> ome["multiscales"][0]["datasets"][0]["coordinateTransformations"][1]
    {'type': 'translation', 'translation': [-72.0, -126.0, -90.0]}
    """
    unit = image.attrs.get("space_unit", "millimeter")
    factor = _AFFINE_TO_AXIS_UNIT.get(unit, 1.0)
    axes = [_axis(image, g, unit) for g in groups]
    scale, translation = [], []
    for axis in axes:
        if axis["type"] == "space":
            k = _SPACE.index(axis["name"])
            size = image.zooms[k] if k < len(image.zooms) else 1.0
            scale.append(float(size))
            translation.append(float(image.affine[k, 3] * factor))
        else:
            scale.append(1.0)
            translation.append(0.0)
    transforms = [
        {"type": "scale", "scale": scale},
        {"type": "translation", "translation": translation},
    ]
    dataset = {"path": "0", "coordinateTransformations": transforms}
    multiscale = {"name": name, "axes": axes, "datasets": [dataset]}
    return {"version": NGFF_VERSION, "multiscales": [multiscale]}


def collection_attrs() -> dict[str, Any]:
    """``ome`` attributes of a group of images: the bioformats2raw layout.

    Examples
    --------
    >>> collection_attrs()
    {'version': '0.5', 'bioformats2raw.layout': 3}
    """
    return {"version": NGFF_VERSION, "bioformats2raw.layout": 3}


def series_attrs(series: Sequence[str]) -> dict[str, Any]:
    """``ome`` attributes of a collection's ``OME`` group: its images' paths.

    Examples
    --------
    >>> series_attrs(["fa", "md"])
    {'version': '0.5', 'series': ['fa', 'md']}
    """
    return {"version": NGFF_VERSION, "series": list(series)}


def is_image(attrs: Mapping[str, Any]) -> bool:
    """Whether a group's attributes are those of an NGFF image.

    Examples
    --------
    >>> is_image({"ome": collection_attrs()})
    False
    """
    return "multiscales" in (attrs.get("ome") or {})


def is_collection(attrs: Mapping[str, Any]) -> bool:
    """Whether a group's attributes are those of an NGFF collection of images.

    Examples
    --------
    >>> is_collection({"ome": collection_attrs()})
    True
    """
    return "bioformats2raw.layout" in (attrs.get("ome") or {})
