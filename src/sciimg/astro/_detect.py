"""Source detection and photometry on a coadd (sep: SExtractor's algorithms)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from sciimg.astro._masks import COADD_BITS, _flagged, bitmask
from sciimg.constants import FWHM_PER_SIGMA

__all__ = [
    "CATALOG_COLUMNS",
    "FLAG_NO_DATA",
    "FLAG_SATURATED",
    "detect",
    "noise_factor",
]

#: Catalog flag bits added to sep's own (1 merged, 2 truncated by the image edge,
#: 4/8 deblending/moment problems, 16 aperture truncated, 32 aperture has masked
#: pixels, 64 aperture all masked, 128 non-positive aperture flux).
FLAG_SATURATED = 1 << 10
FLAG_NO_DATA = 1 << 11

CATALOG_COLUMNS = (
    "id",
    "patch",
    "x",
    "y",
    "ra",
    "dec",
    "flux",
    "flux_err",
    "snr",
    "a",
    "b",
    "theta",
    "kron_radius",
    "npix",
    "peak",
    "flags",
)


def _gaussian_kernel(fwhm: float) -> np.ndarray:
    sigma = fwhm / FWHM_PER_SIGMA
    r = max(1, int(np.ceil(2.0 * sigma)))
    y, x = np.mgrid[-r : r + 1, -r : r + 1]
    k = np.exp(-0.5 * (x**2 + y**2) / sigma**2)
    return (k / k.sum()).astype(np.float32)


def noise_factor(
    image: np.ndarray,
    variance: np.ndarray,
    occupied: np.ndarray,
    radius: np.ndarray,
    *,
    radii: tuple[float, ...] = (2.0, 3.0, 4.0, 6.0, 8.0, 12.0),
    samples: int = 1000,
    seed: int = 0,
) -> np.ndarray:
    """How much the noise of an aperture sum exceeds what per-pixel variance says.

    Resampling and PSF matching correlate neighbouring pixels of a coadd, so the
    variance plane, exact per pixel, underestimates the noise of a sum over many
    pixels. This measures it the way astronomers do, with "empty apertures":
    circles dropped at random on blank sky (away from every detection's
    footprint), comparing the scatter of their sums with the variance plane's
    prediction, per radius; each source's factor is interpolated at its
    aperture's radius. Too little blank sky for a radius gives a factor of 1.

    Returns
    -------
    ndarray
        One factor per entry of ``radius`` (multiply the flux errors by it).
    """
    import sep
    from scipy.ndimage import distance_transform_edt

    free = distance_transform_edt(~occupied)
    rng = np.random.default_rng(seed)
    factors = []
    for r in radii:
        yx = np.argwhere(free > r + 2)
        if len(yx) < 50:
            factors.append(np.nan)
            continue
        pick = yx[rng.choice(len(yx), size=min(samples, len(yx)), replace=False)]
        x, y = pick[:, 1].astype(float), pick[:, 0].astype(float)
        sums, _, _ = sep.sum_circle(image, x, y, r, subpix=1)
        pred, _, _ = sep.sum_circle(variance, x, y, r, subpix=1)
        # Median absolute deviation: faint undetected sources must not inflate it.
        mad = 1.4826 * np.median(np.abs(sums - np.median(sums)))
        factors.append(mad / np.sqrt(np.median(pred)))
    factors = np.asarray(factors)
    known = np.isfinite(factors) & (factors > 0)
    if not known.any():
        return np.ones_like(np.asarray(radius, dtype=float))
    return np.interp(radius, np.asarray(radii)[known], factors[known])


def detect(
    image,
    variance=None,
    mask=None,
    *,
    wcs=None,
    threshold: float = 5.0,
    minarea: int = 5,
    psf_fwhm: float | None = None,
    deblend_nthresh: int = 32,
    deblend_cont: float = 0.005,
    background_mesh: int = 64,
    background_filter: int = 3,
    kron_factor: float = 2.5,
    min_radius: float = 3.5,
    mask_bits: Mapping[str, int] | None = None,
    patch=None,
) -> Any:
    """Detect, deblend and measure sources (SExtractor's method, via sep).

    The background and its noise are measured on the image itself, so
    ``threshold`` is in σ of the coadd's own noise, wherever its depth varies.
    Fluxes are Kron ("AUTO") fluxes, with errors from the variance plane scaled
    for the correlation of neighbouring pixels (see :func:`noise_factor`).

    Parameters
    ----------
    image : array_like, shape (ny, nx)
        NaN where there is no data.
    variance : array_like, optional
        Per-pixel variance for flux errors; default the background noise².
    mask : array_like of int, optional
        ``NO_DATA`` pixels are ignored; ``SAT`` at a source's peak flags it.
    wcs : astropy.wcs.WCS, optional
        For ``ra``/``dec``.
    threshold : float
        Detection threshold in σ per pixel (after the matched filter).
    minarea : int
        Minimum pixels above threshold.
    psf_fwhm : float, optional
        FWHM (pixels) of the Gaussian matched filter; default sep's 3×3 kernel.
    deblend_nthresh, deblend_cont : int, float
        Deblending levels and minimum contrast.
    background_mesh, background_filter : int
        Background cell size (pixels) and median filter (cells).
    kron_factor, min_radius : float
        Kron aperture = ``kron_factor`` Kron radii, at least ``min_radius``
        pixels in radius.
    mask_bits : mapping, optional
        Bit index per flag name.
    patch : Patch, optional
        If given, its id fills the ``patch`` column and only sources in its
        inner region are kept (so overlapping patches do not list one source
        twice).

    Returns
    -------
    astropy.table.Table
        Columns ``id, patch, x, y, ra, dec, flux, flux_err, snr, a, b, theta,
        kron_radius, npix, peak, flags``.

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.mgrid[:64, :64]
    >>> img = 400 * np.exp(-((xx - 20.0)**2 + (yy - 40.0)**2) / 4.5)
    >>> img = img + np.random.default_rng(0).normal(0, 1, img.shape)
    >>> cat = detect(img)
    >>> len(cat), round(float(cat["x"][0]), 1), round(float(cat["y"][0]), 1)
    (1, 20.0, 40.0)
    """
    import sep
    from astropy.table import Table

    data = np.ascontiguousarray(np.asarray(image), dtype=np.float64)
    bits = dict(COADD_BITS if mask_bits is None else {**COADD_BITS, **mask_bits})
    no_data = ~np.isfinite(data) | _flagged(
        mask, bitmask(["NO_DATA"], bits), data.shape
    )
    data = np.where(no_data, 0.0, data)
    mesh = max(8, min(background_mesh, *data.shape))
    bkg = sep.Background(
        data, mask=no_data, bw=mesh, bh=mesh, fw=background_filter, fh=background_filter
    )
    sub = data - bkg.back()
    rms = bkg.rms()
    if variance is not None:
        var = np.asarray(variance, dtype=np.float64)
        err = np.sqrt(np.where(np.isfinite(var) & (var > 0), var, rms**2))
    else:
        err = rms
    kernel = _gaussian_kernel(psf_fwhm) if psf_fwhm else None
    extra = {} if kernel is None else {"filter_kernel": kernel}
    # Crowded or deep images can exceed sep's default pixel stack.
    sep.set_extract_pixstack(max(300_000, data.size // 4))
    sep.set_sub_object_limit(4096)
    objects, segmap = sep.extract(
        sub,
        threshold,
        segmentation_map=True,
        err=rms,
        mask=no_data,
        minarea=minarea,
        deblend_nthresh=deblend_nthresh,
        deblend_cont=deblend_cont,
        **extra,
    )
    n = len(objects)
    x, y = objects["x"], objects["y"]
    a, b = objects["a"], objects["b"]
    theta = np.clip(objects["theta"], -np.pi / 2, np.pi / 2)
    flags = objects["flag"].astype(np.int64)
    if n:
        kron, kflag = sep.kron_radius(sub, x, y, a, b, theta, 6.0, mask=no_data)
        flux, flux_err, fflag = sep.sum_ellipse(
            sub, x, y, a, b, theta, kron_factor * kron, err=err, mask=no_data, subpix=1
        )
        # Too small a Kron ellipse (faint or tiny sources): use a circle instead.
        small = ~(kron * np.sqrt(a * b) * kron_factor >= min_radius)
        if small.any():
            cflux, cerr, cflag = sep.sum_circle(
                sub, x[small], y[small], min_radius, err=err, mask=no_data, subpix=1
            )
            flux[small], flux_err[small], fflag[small] = cflux, cerr, cflag
        flags |= kflag | fflag
        radius = np.where(small, min_radius, kron_factor * kron * np.sqrt(a * b))
        flux_err = flux_err * noise_factor(sub, err**2, (segmap > 0) | no_data, radius)
        xi = np.clip(objects["xpeak"], 0, data.shape[1] - 1)
        yi = np.clip(objects["ypeak"], 0, data.shape[0] - 1)
        if mask is not None:
            peak_mask = np.asarray(mask)[yi, xi].astype(np.int64)
            flags[(peak_mask & bitmask(["SAT"], bits)) != 0] |= FLAG_SATURATED
        near = np.array(
            [
                no_data[max(v - 1, 0) : v + 2, max(u - 1, 0) : u + 2].any()
                for u, v in zip(xi, yi, strict=True)
            ],
            dtype=bool,
        )
        flags[near] |= FLAG_NO_DATA
    else:
        kron = flux = flux_err = np.zeros(0)
    if wcs is not None and n:
        ra, dec = wcs.pixel_to_world_values(x, y)
    else:
        ra = dec = np.full(n, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = np.where(flux_err > 0, flux / flux_err, np.nan)
    keep = np.ones(n, dtype=bool) if patch is None else patch.is_inner(y, x)
    table = Table(
        {
            "id": np.arange(1, int(keep.sum()) + 1, dtype=np.int64),
            "patch": np.full(int(keep.sum()), "" if patch is None else patch.id),
            "x": x[keep],
            "y": y[keep],
            "ra": np.asarray(ra, dtype=np.float64)[keep],
            "dec": np.asarray(dec, dtype=np.float64)[keep],
            "flux": np.asarray(flux, dtype=np.float64)[keep],
            "flux_err": np.asarray(flux_err, dtype=np.float64)[keep],
            "snr": snr[keep],
            "a": a[keep],
            "b": b[keep],
            "theta": np.degrees(theta[keep]),
            "kron_radius": np.asarray(kron, dtype=np.float64)[keep],
            "npix": objects["npix"][keep].astype(np.int64),
            "peak": objects["peak"][keep],
            "flags": flags[keep],
        }
    )
    table["x"].description = "patch pixel column, 0-based"
    table["theta"].unit = "deg"
    table["ra"].unit = table["dec"].unit = "deg"
    return table
