"""The in-memory description of one image: a lazy array plus its geometry."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import dask.array as da
    from dipy.core.gradients import GradientTable

__all__ = ["Image"]


@dataclass
class Image:
    """A chunked image with the geometry it came with.

    The axes are named by ``dims``, in each field's own order: volumes (NIfTI)
    in NIfTI order, ``x, y, z`` then any non-spatial axes, so arrays go straight
    into dipy; sky images (FITS) in array order, ``y, x`` (``z, y, x`` for a
    cube), as astropy, sep and photutils take them. ``affine`` and ``zooms`` are
    indexed by spatial axis *name*, ``x, y, z``, whatever the order of the
    array's axes.

    Parameters
    ----------
    data : dask.array.Array
        The voxels, lazily.
    affine : ndarray, shape (4, 4)
        Spatial indices (x, y, z) to world (scanner millimetres; for sky images
        intermediate world coordinates in degrees).
    dims : tuple of str
        Axis names, e.g. ``("x", "y", "z", "volume")`` or ``("y", "x")``.
    zooms : tuple of float
        Voxel size per spatial axis (x, y, z), in millimetres (arcseconds for
        sky images).
    gtab : dipy GradientTable, optional
        The diffusion gradient table, when the image is a diffusion series.
    source : str, optional
        Where the image was read from, for messages and provenance.
    attrs : dict
        Anything else worth keeping (JSON-serialisable).

    Examples
    --------
    >>> import dask.array as da, numpy as np
    >>> img = Image(da.zeros((4, 4, 2)), np.eye(4), ("x", "y", "z"), (1.0, 1.0, 2.0))
    >>> img.shape
    (4, 4, 2)
    """

    data: da.Array
    affine: np.ndarray
    dims: tuple[str, ...]
    zooms: tuple[float, ...]
    gtab: GradientTable | None = None
    source: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.affine = np.asarray(self.affine, dtype=np.float64)
        if self.affine.shape != (4, 4):
            msg = f"affine must be 4x4, got shape {self.affine.shape}"
            raise ValueError(msg)
        if len(self.dims) != self.data.ndim:
            msg = f"dims {self.dims} do not match a {self.data.ndim}-D array"
            raise ValueError(msg)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def ndim(self) -> int:
        return len(self.dims)

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype


def default_dims(ndim: int) -> tuple[str, ...]:
    """NIfTI-order axis names: ``x, y, z``, then ``volume``, then ``dim_4``...

    Examples
    --------
    >>> default_dims(4)
    ('x', 'y', 'z', 'volume')
    """
    extra = ("volume", *tuple(f"dim_{i}" for i in range(4, max(ndim, 4))))
    return (("x", "y", "z", *extra))[:ndim]
