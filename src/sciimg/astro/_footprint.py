"""Warp a whole exposure onto its footprint on a patch, once.

:func:`warp` and the block tasks of the first co-addition warped an exposure one
output block at a time, each block from its own cutout: every block paid for its
own pixel transform (twice: once for the bicubic planes, once for the nearest-pixel
ones) and PSF-matched a margin of input around it. Here the exposure is warped
over the bounding box of its footprint on the patch, in bands of output rows that
bound the memory: each output pixel's position in the exposure is computed once,
and image, variance, mask and flags are all interpolated at those positions.

The interpolation is reproject's (``reproject_interp``): SciPy's
``map_coordinates`` after the same clipping of positions to the outer half of the
edge pixels, so a band equals ``reproject_interp`` on the same cutout.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sciimg.astro._warp import _header_wcs, _margin, input_box, psf_match
from sciimg.kernels import namespace, ndimage

__all__ = ["footprint_box", "warp_footprint"]

#: Most output pixels in one band of a footprint warp. A band holds about 100
#: bytes per output pixel (positions, planes in float64) and as much again for
#: its PSF-matched input cutout: 2**18 pixels keep a warp task near 50 MiB
#: whatever the exposure's size.
BAND_PIXELS = 1 << 18


def footprint_box(
    wcs, shape: Sequence[int], target_wcs, target_shape: Sequence[int]
) -> tuple[int, int, int, int] | None:
    """Target pixel box ``(y0, y1, x0, x1)`` holding every pixel the exposure covers.

    The exposure's outline (pixel edges, 33 points a side) is mapped onto the
    target grid; the box is the outline's bounding box widened by one pixel and
    cut to the grid. ``None`` if the exposure misses the grid.

    Examples
    --------
    >>> from astropy.wcs import WCS
    >>> w = WCS(naxis=2)
    >>> w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    >>> w.wcs.crval, w.wcs.crpix = [150.0, 2.0], [32.5, 32.5]
    >>> w.wcs.cd = [[-1e-4, 0], [0, 1e-4]]
    >>> footprint_box(w, (64, 64), w, (100, 100))
    (0, 65, 0, 65)
    >>> footprint_box(w, (64, 64), w.slice((slice(70, 90), slice(0, 50))), (20, 50))
    """
    ny, nx = shape
    t = np.linspace(0.0, 1.0, 33)
    xs = np.concatenate([t * nx, t * nx, np.zeros(33), np.full(33, nx)]) - 0.5
    ys = np.concatenate([np.zeros(33), np.full(33, ny), t * ny, t * ny]) - 0.5
    x, y = target_wcs.world_to_pixel_values(*wcs.pixel_to_world_values(xs, ys))
    ty, tx = target_shape
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        return 0, ty, 0, tx  # an outline that leaves the projection: all of it
    # Pixels whose centres lie within the outline, and one more on every side
    # for an outline that bends between its points.
    x0, x1 = int(np.ceil(x.min())) - 1, int(np.floor(x.max())) + 2
    y0, y1 = int(np.ceil(y.min())) - 1, int(np.floor(y.max())) + 2
    if x1 <= 0 or y1 <= 0 or x0 >= tx or y0 >= ty:
        return None
    return max(y0, 0), min(y1, ty), max(x0, 0), min(x1, tx)


#: Largest distance, pixels, by which the projective fit of a band's pixel
#: transform may miss the exact one at the check points; beyond it (a distorted
#: WCS, say) every pixel is transformed exactly.
FIT_TOLERANCE = 1e-6


def _normalised(a, b) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points centred on their mean at unit mean distance, and the matrix doing it."""
    ca, cb = a.mean(), b.mean()
    k = 1.0 / max(float(np.hypot(a - ca, b - cb).mean()), 1e-12)
    t = np.array([[k, 0.0, -ca * k], [0.0, k, -cb * k], [0.0, 0.0, 1.0]])
    return (a - ca) * k, (b - cb) * k, t


def _projective(x, y, u, v) -> np.ndarray | None:
    """The 3×3 projective map taking points (x, y) to (u, v), least squares."""
    xn, yn, t_src = _normalised(x, y)
    un, vn, t_dst = _normalised(u, v)
    one, zero = np.ones_like(xn), np.zeros_like(xn)
    a = np.concatenate(
        [
            np.stack([xn, yn, one, zero, zero, zero, -un * xn, -un * yn], 1),
            np.stack([zero, zero, zero, xn, yn, one, -vn * xn, -vn * yn], 1),
        ]
    )
    h, *_ = np.linalg.lstsq(a, np.concatenate([un, vn]), rcond=None)
    if not np.isfinite(h).all():
        return None
    return np.linalg.inv(t_dst) @ np.append(h, 1.0).reshape(3, 3) @ t_src


def _apply(h: np.ndarray, x, y) -> tuple[np.ndarray, np.ndarray]:
    w = h[2, 0] * x + h[2, 1] * y + h[2, 2]
    return (h[0, 0] * x + h[0, 1] * y + h[0, 2]) / w, (
        h[1, 0] * x + h[1, 1] * y + h[1, 2]
    ) / w


def _pixel_in(w_in, w_out, origin, shape, *, exact: bool = False) -> np.ndarray:
    """(y, x) in the input of every pixel of an output band: shape (2, ny * nx).

    Positions are ``pixel_to_pixel``'s, as ``reproject_interp`` computes them
    (no round trip), for output pixels ``origin`` + (0..ny-1, 0..nx-1). Between
    two tangent-plane (TAN) projections without distortion that transform is
    projective, so it is fitted to 36 exact positions and checked at 25 others;
    the fit is used only where it misses none by more than :data:`FIT_TOLERANCE`
    pixels (or ``exact`` asks for every pixel to be transformed).
    """
    from astropy.wcs.utils import pixel_to_pixel

    (y0, x0), (ny, nx) = origin, shape
    xs, ys = np.arange(nx, dtype=float) + x0, np.arange(ny, dtype=float) + y0
    if not exact:
        # Fit on a grid spanning at least 16 pixels, check between its nodes.
        gx = np.linspace(x0, x0 + max(nx - 1, 16), 6)
        gy = np.linspace(y0, y0 + max(ny - 1, 16), 6)
        fx, fy = (a.ravel() for a in np.meshgrid(gx, gy))
        cx, cy = (a.ravel() for a in np.meshgrid(_mid(gx), _mid(gy)))
        u, v = pixel_to_pixel(w_out, w_in, np.r_[fx, cx], np.r_[fy, cy])
        n = fx.size
        h = (
            _projective(fx, fy, u[:n], v[:n])
            if np.isfinite(u).all() and np.isfinite(v).all()
            else None
        )
        if h is not None:
            pu, pv = _apply(h, cx, cy)
            if max(np.abs(pu - u[n:]).max(), np.abs(pv - v[n:]).max()) <= (
                FIT_TOLERANCE
            ):
                x_in, y_in = _apply(h, xs[None, :], ys[:, None])
                return np.array([y_in.ravel(), x_in.ravel()])
    yy, xx = np.meshgrid(ys, xs, indexing="ij", copy=False)
    x_in, y_in = pixel_to_pixel(w_out, w_in, xx.ravel(), yy.ravel())
    return np.array([y_in, x_in])


def _mid(a: np.ndarray) -> np.ndarray:
    return (a[1:] + a[:-1]) / 2


class _Positions:
    """Input positions (2, n) of output pixels, prepared for :func:`_interp` on
    planes of ``shape``: clipped to the outer half of the edge pixels, as
    reproject's ``map_coordinates`` does, with where they fall inside the array
    and where outside the image."""

    def __init__(self, coords, shape: Sequence[int]):
        xp = namespace(coords)
        size = xp.asarray(np.array(shape, dtype=float)[:, None])
        c = coords.copy()
        for i, n in enumerate(shape):
            row = c[i]
            row[(row < 0) & (row >= -0.5)] = 0
            row[(row < n - 0.5) & (row >= n - 1)] = n - 1
        self.coords, self.shape = c, tuple(shape)
        self.inside = ~((c < 0) | (c >= size)).any(0)
        self.outside = ((c < -0.5) | (c > size - 0.5)).any(0)


def _interp(plane: np.ndarray, pos: _Positions, order: int) -> np.ndarray:
    """``plane`` at ``pos``, NaN outside: reproject's ``map_coordinates``.

    Splines (``order`` > 1) are evaluated only at positions inside the array,
    from coefficients SciPy computes over the whole plane, as reproject does for
    an array of less than 256 Mi pixels. The nearest pixel (``order`` 0) is
    looked up directly: SciPy's ``floor(x + 0.5)`` within [0, n - 1], its
    constant value outside.
    """
    xp = namespace(plane)
    map_coordinates = ndimage(xp).map_coordinates
    if plane.dtype.kind != "f" or plane.dtype.itemsize < 4:
        plane = plane.astype(np.float32)
    n = pos.coords.shape[1]
    if order == 0:
        out = xp.full(n, np.nan)
        c = pos.coords
        last = xp.asarray(np.array(pos.shape)[:, None] - 1)
        ok = ~((c < 0) | (c > last)).any(0)
        idx = tuple(xp.floor(c[i, ok] + 0.5).astype(np.intp) for i in range(len(c)))
        out[ok] = plane[idx]
    elif order <= 1 and plane.dtype.isnative:
        kw = {"order": order, "mode": "constant", "cval": np.nan}
        out = map_coordinates(plane, pos.coords, output=np.float64, **kw)
    else:
        kw = {"order": order, "mode": "constant", "cval": np.nan}
        if bool(pos.inside.all()):
            out = map_coordinates(plane, pos.coords, output=np.float64, **kw)
        else:
            out = xp.full(n, np.nan)
            if bool(pos.inside.any()):
                out[pos.inside] = map_coordinates(
                    plane, pos.coords[:, pos.inside], **kw
                )
    out[pos.outside] = np.nan
    return out


def _warp_band(planes, w_in, w_out, cut, band, shape, sigma, bits) -> np.ndarray:
    """Warp one input cutout onto one band of output rows.

    ``cut`` is the cutout's first input pixel (y, x), ``band`` the band's first
    output pixel. Returns float32 (3, ny, nx): the value (NaN where flagged or
    without data), its variance (NaN without data) and 1 where the exposure
    saturated, as the co-addition takes them: the pixels of ``_warp_arrays``,
    from one pixel transform instead of two.
    """
    # Planes on a GPU are warped there; the positions are computed here (by
    # astropy) and copied over once for all planes.
    xp = namespace(*planes)
    bad, sat, no_data = bits
    image = xp.asarray(planes[0], dtype=np.float64)
    variance = xp.asarray(planes[1], dtype=np.float64)
    mask = xp.asarray(planes[2], dtype=np.int64)
    invalid = ~xp.isfinite(image) | ~xp.isfinite(variance) | ((mask & bad) != 0)
    matched, var, invalid = psf_match(image, variance, invalid, sigma)
    coords = _pixel_in(w_in, w_out, band, shape)
    coords -= np.array(cut, dtype=float)[:, None]
    pos = _Positions(xp.asarray(coords), image.shape)
    out_img = _interp(matched, pos, 3).reshape(shape)
    out_var = _interp(var, pos, 3).reshape(shape)
    # A flagged pixel spoils the output pixels whose interpolation touches it:
    # grow the flags by one pixel, then take the nearest. Flags and mask go in
    # one plane (exact in float64), as both take the same nearest pixel.
    spoiled = ndimage(xp).binary_dilation(invalid, xp.ones((3, 3), bool))
    nearest = _interp(mask * 2.0 + spoiled, pos, 0).reshape(shape)
    empty = ~xp.isfinite(out_img)
    known = xp.isfinite(nearest)
    code = xp.where(known, nearest, 0).astype(np.int64)
    out_mask = code >> 1
    out_mask[empty] |= no_data
    bad_out = ~known | (code & 1 != 0) | empty
    out = xp.empty((3, *shape), dtype=np.float32)
    out[0] = xp.where(bad_out | ((out_mask & bad) != 0), np.nan, out_img)
    out[1] = xp.where(bad_out, np.nan, out_var)
    out[2] = ((out_mask & sat) != 0) if sat else 0
    return out


def warp_footprint(
    planes: Sequence,
    wcs,
    shape: Sequence[int],
    target_wcs,
    box: Sequence[int],
    *,
    sigma: float = 0.0,
    bits: tuple[int, int, int] = (0, 0, 0),
    offset: Sequence[int] = (0, 0),
    out: np.ndarray | None = None,
    band_pixels: int = BAND_PIXELS,
) -> np.ndarray:
    """Warp an exposure onto a box of a target grid, PSF-matched, band by band.

    Parameters
    ----------
    planes : (image, variance, mask)
        Arrays, or objects that read on slicing (Zarr arrays): each band reads
        only the cutout it needs.
    wcs, shape
        The exposure's WCS (or FITS header string) and (ny, nx).
    target_wcs, box
        The target grid's WCS (or header string) and the box ``(y0, y1, x0, x1)``
        of it to fill, e.g. from :func:`footprint_box`.
    sigma : float
        Gaussian that matches the exposure's PSF to the target's (pixels).
    bits : (bad, sat, no_data)
        Mask values: flags that carry no data, saturation, no data.
    offset : (int, int)
        Exposure pixel of ``planes[...][0, 0]``, when they hold a cutout.
    out : ndarray, optional
        Float32 (3, y1 - y0, x1 - x0) to write into (a memory map).

    Returns
    -------
    ndarray, float32, shape (3, y1 - y0, x1 - x0)
        Value (NaN where flagged or without data), variance, and 1 where the
        exposure saturated.

    Examples
    --------
    >>> from astropy.wcs import WCS
    >>> w = WCS(naxis=2)
    >>> w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    >>> w.wcs.crval, w.wcs.crpix = [150.0, 2.0], [16.5, 16.5]
    >>> w.wcs.cd = [[-1e-4, 0], [0, 1e-4]]
    >>> img = np.arange(32 * 32, dtype=float).reshape(32, 32)
    >>> planes = (img, np.ones_like(img), np.zeros((32, 32), "i4"))
    >>> got = warp_footprint(planes, w, (32, 32), w, (0, 32, 0, 32))
    >>> bool(np.allclose(got[0], img)), got.shape
    (True, (3, 32, 32))
    """
    xp = namespace(*planes)  # CuPy planes are warped on their GPU
    w_in = _header_wcs(wcs) if isinstance(wcs, str) else wcs
    w_target = _header_wcs(target_wcs) if isinstance(target_wcs, str) else target_wcs
    y0, y1, x0, x1 = box
    width = x1 - x0
    if out is None:
        out = xp.empty((3, y1 - y0, width), dtype=np.float32)
    # Bands of equal height: a thin last band would pay a whole margin of input.
    bands = -(-(y1 - y0) * width // max(1, band_pixels))
    rows = max(1, -(-(y1 - y0) // max(1, bands)))
    margin = _margin(sigma)
    oy, ox = offset
    # What the planes hold, in exposure pixels: a band's cutout is kept inside
    # it (a cutout of the whole footprint's input, margin included, may miss a
    # band's by a fraction of a pixel where the WCS bends between its points).
    held = (oy, oy + planes[0].shape[0], ox, ox + planes[0].shape[1])
    for r in range(y0, y1, rows):
        n = min(rows, y1 - r)
        rows_out = slice(r - y0, r - y0 + n)
        cut = input_box(w_in, shape, w_target, (r, x0), (n, width), margin)
        if cut is None:
            out[0:2, rows_out] = np.nan
            out[2, rows_out] = 0
            continue
        ya, yb = max(cut[0], held[0]), min(cut[1], held[1])
        xa, xb = max(cut[2], held[2]), min(cut[3], held[3])
        local = (slice(ya - oy, yb - oy), slice(xa - ox, xb - ox))
        out[:, rows_out] = _warp_band(
            [xp.asarray(p[local]) for p in planes],
            w_in,
            w_target,
            (ya, xa),
            (r, x0),
            (n, width),
            sigma,
            bits,
        )
    return out
