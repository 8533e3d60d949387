"""A sky map: one tangent plane over the survey, cut into square patches.

As in LSST's ``DiscreteSkyMap``, every patch shares the projection and pixel grid
of one tangent-plane WCS, so patches line up pixel for pixel, and each has an
*inner* region (the tiles partition the sky) plus a *border* of overlap with its
neighbours, so that sources near an edge are detected whole in some patch.

Every pair here is in array order, ``(y, x)``, and every box is
``(y0, y1, x0, x1)`` with the ends excluded, as for NumPy slices and as in
:func:`~sciimg.astro.footprint_box`. Only FITS-facing values keep FITS order:
the WCS's ``CRPIX`` and the patch names, ``patch-<column>-<row>``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Patch", "SkyMap", "make_skymap"]


@dataclass(frozen=True)
class Patch:
    """One patch of a sky map.

    Attributes
    ----------
    index : (int, int)
        Row and column of the patch in the sky map.
    origin : (int, int)
        Sky-map pixel (y, x) of the patch's first pixel, border included.
    shape : (int, int)
        (ny, nx) of the patch grid, border included.
    inner : (int, int, int, int)
        ``(y0, y1, x0, x1)`` of the inner region in patch pixels (y1, x1 excluded).
    header : str
        The patch's FITS WCS header.
    """

    index: tuple[int, int]
    origin: tuple[int, int]
    shape: tuple[int, int]
    inner: tuple[int, int, int, int]
    header: str

    @property
    def id(self) -> str:
        """Name of the patch, ``patch-<column>-<row>``, e.g. ``patch-1-0``."""
        return f"patch-{self.index[1]}-{self.index[0]}"

    @property
    def wcs(self):
        """The patch's astropy WCS."""
        from astropy.io.fits import Header
        from astropy.wcs import WCS

        return WCS(Header.fromstring(self.header))

    def is_inner(self, y, x) -> np.ndarray:
        """Whether patch pixel positions lie in the inner region (primary sources)."""
        y0, y1, x0, x1 = self.inner
        y, x = np.asarray(y), np.asarray(x)
        return (x >= x0 - 0.5) & (x < x1 - 0.5) & (y >= y0 - 0.5) & (y < y1 - 0.5)


@dataclass(frozen=True)
class SkyMap:
    """A tangent-plane pixel grid over the sky, cut into patches.

    Attributes
    ----------
    ra, dec : float
        Tangent point, degrees.
    pixel_scale : float
        Arcseconds per pixel.
    patch_size, border : int
        Inner patch side and overlap border, in pixels.
    size : (int, int)
        Number of patches along y and x (rows, columns).
    origin : (float, float)
        Sky-map pixel (y, x) of the tangent point.
    """

    ra: float
    dec: float
    pixel_scale: float
    patch_size: int
    border: int
    size: tuple[int, int]
    origin: tuple[float, float]

    def wcs(self, offset: tuple[int, int] = (0, 0)):
        """The sky map's TAN WCS, for a grid starting at sky-map pixel ``offset``
        (y, x)."""
        from astropy.wcs import WCS

        w = WCS(naxis=2)
        w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        w.wcs.crval = [self.ra, self.dec]
        # FITS pixels count from 1; sky-map pixel 0 is FITS pixel 1. CRPIX is
        # in FITS order, (x, y).
        w.wcs.crpix = [self.origin[1] - offset[1] + 1, self.origin[0] - offset[0] + 1]
        scale = self.pixel_scale / 3600.0
        w.wcs.cd = [[-scale, 0.0], [0.0, scale]]  # north up, east left
        w.wcs.radesys = "ICRS"
        w.wcs.equinox = 2000.0
        return w

    def patch(self, iy: int, ix: int) -> Patch:
        """The patch in row ``iy`` and column ``ix``.

        Examples
        --------
        >>> sm = SkyMap(10.0, 0.0, 1.0, 100, 10, (2, 3), (150.0, 150.0))
        >>> p = sm.patch(1, 2)
        >>> p.id, p.origin, p.shape, p.inner
        ('patch-2-1', (90, 190), (120, 120), (10, 110, 10, 110))
        """
        if not (0 <= iy < self.size[0] and 0 <= ix < self.size[1]):
            msg = f"patch ({iy}, {ix}) is outside the sky map of {self.size} patches"
            raise IndexError(msg)
        p, b = self.patch_size, self.border
        origin = (iy * p - b, ix * p - b)
        shape = (p + 2 * b, p + 2 * b)
        header = self.wcs(origin).to_header()
        header["NAXIS1"], header["NAXIS2"] = shape[1], shape[0]
        return Patch((iy, ix), origin, shape, (b, b + p, b, b + p), header.tostring())

    def patches(self) -> list[Patch]:
        """All patches, row by row."""
        return [
            self.patch(iy, ix)
            for iy in range(self.size[0])
            for ix in range(self.size[1])
        ]

    def pixel_box(self, wcs, shape: Sequence[int]) -> tuple[float, float, float, float]:
        """Sky-map pixel bounding box ``(y0, y1, x0, x1)`` of an image's footprint
        (pixel centres of its edges, ends included)."""
        ys, xs = _edge_samples(shape)
        world = wcs.pixel_to_world_values(xs, ys)
        x, y = self.wcs().world_to_pixel_values(*world)
        return float(y.min()), float(y.max()), float(x.min()), float(x.max())

    def patches_for(self, wcs, shape: Sequence[int]) -> list[Patch]:
        """The patches (borders included) that an image of ``shape`` overlaps.

        Examples
        --------
        >>> from astropy.wcs import WCS
        >>> sm = SkyMap(10.0, 0.0, 1.0, 100, 10, (3, 3), (150.0, 150.0))
        >>> [p.id for p in sm.patches_for(sm.wcs((40, 40)), (30, 30))]
        ['patch-0-0']
        >>> len(sm.patches_for(sm.wcs((85, 85)), (30, 30)))
        4
        """
        y0, y1, x0, x1 = self.pixel_box(wcs, shape)
        p, b = self.patch_size, self.border
        out = []
        for iy in range(self.size[0]):
            for ix in range(self.size[1]):
                if (
                    x1 >= ix * p - b - 0.5
                    and x0 < (ix + 1) * p + b - 0.5
                    and y1 >= iy * p - b - 0.5
                    and y0 < (iy + 1) * p + b - 0.5
                ):
                    out.append(self.patch(iy, ix))
        return out

    def to_dict(self) -> dict:
        return {
            "ra": self.ra,
            "dec": self.dec,
            "pixel_scale": self.pixel_scale,
            "patch_size": self.patch_size,
            "border": self.border,
            "size": list(self.size),
            "origin": list(self.origin),
        }


def _edge_samples(shape: Sequence[int], n: int = 9) -> tuple[np.ndarray, np.ndarray]:
    """Pixel positions along the edges of an image (corners included)."""
    ny, nx = shape
    t = np.linspace(0, 1, n)
    xs = np.concatenate([t * nx, t * nx, np.zeros(n), np.full(n, nx)]) - 0.5
    ys = np.concatenate([np.zeros(n), np.full(n, ny), t * ny, t * ny]) - 0.5
    return ys, xs


def make_skymap(
    images: Iterable[tuple[object, Sequence[int]]],
    *,
    patch_size: int = 2000,
    border: int = 100,
    pixel_scale: float | None = None,
    center: tuple[float, float] | None = None,
) -> SkyMap:
    """Cover the footprints of images with a tangent-plane grid of patches.

    Parameters
    ----------
    images : iterable of (WCS, shape)
        Celestial WCS and (ny, nx) of each exposure.
    patch_size, border : int
        Inner side and overlap border of a patch, in pixels (the HiTS run of
        Mehta et al. used 2000 and 100 at 0.333″ per pixel).
    pixel_scale : float, optional
        Arcseconds per pixel; default the median of the exposures'.
    center : (ra, dec), optional
        Tangent point in degrees; default the centre of the footprints.

    Returns
    -------
    SkyMap

    Examples
    --------
    >>> from astropy.wcs import WCS
    >>> w = WCS(naxis=2)
    >>> w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    >>> w.wcs.crval, w.wcs.crpix = [150.0, 2.0], [100.5, 100.5]
    >>> w.wcs.cd = [[-0.5 / 3600, 0], [0, 0.5 / 3600]]
    >>> sm = make_skymap([(w, (200, 200))], patch_size=120, border=10)
    >>> sm.size, round(sm.pixel_scale, 3)
    ((2, 2), 0.5)
    """
    from astropy.coordinates import SkyCoord
    from astropy.wcs.utils import proj_plane_pixel_scales

    images = list(images)
    if not images:
        msg = "make_skymap needs at least one image"
        raise ValueError(msg)
    if patch_size < 1 or border < 0:
        msg = f"patch_size must be >= 1 and border >= 0, got {patch_size}, {border}"
        raise ValueError(msg)
    if pixel_scale is None:
        pixel_scale = float(
            np.median([proj_plane_pixel_scales(w).mean() * 3600 for w, _ in images])
        )
    ras, decs = [], []
    for w, shape in images:
        ys, xs = _edge_samples(shape, n=3)
        ra, dec = w.pixel_to_world_values(xs, ys)
        ras.append(ra)
        decs.append(dec)
    corners = SkyCoord(np.concatenate(ras), np.concatenate(decs), unit="deg")
    if center is None:
        # The mean of unit vectors, so that RA wrapping at 0/360 does no harm.
        mean = corners.cartesian.mean()
        mid = SkyCoord(mean, representation_type="cartesian").spherical
        center = (float(mid.lon.deg), float(mid.lat.deg))
    probe = SkyMap(
        center[0], center[1], pixel_scale, patch_size, border, (1, 1), (0.0, 0.0)
    )
    x, y = probe.wcs().world_to_pixel_values(corners.ra.deg, corners.dec.deg)
    # Shift so the footprints start at pixel 0 and count whole patches.
    origin = (float(np.ceil(-y.min() + 0.5)), float(np.ceil(-x.min() + 0.5)))
    extent = (y.max() + origin[0] + 0.5, x.max() + origin[1] + 0.5)
    size = (
        max(1, int(np.ceil(extent[0] / patch_size))),
        max(1, int(np.ceil(extent[1] / patch_size))),
    )
    return SkyMap(
        float(center[0]),
        float(center[1]),
        float(pixel_scale),
        int(patch_size),
        int(border),
        size,
        origin,
    )
