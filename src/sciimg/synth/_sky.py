"""The sky and the camera: a truth catalog, its exact rendering, a CCD's defects."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from sciimg.constants import FWHM_PER_SIGMA

if TYPE_CHECKING:
    from astropy.table import Table
    from astropy.wcs import WCS

__all__ = ["make_sky_catalog", "render_exposure"]

#: Zero point of the catalog's fluxes: ``mag = REFERENCE_MAGZERO - 2.5 log10(flux)``.
REFERENCE_MAGZERO = 27.0
#: Default range of galaxies' intrinsic sigma (major axis), arcsec.
GALAXY_SIGMA_RANGE = (0.5, 2.0)
# Slopes ``a`` of the cumulative counts N(>flux) ∝ flux**-a: log10 N rises by
# 0.4·a per magnitude, 0.2 for stars at high latitude, steeper for galaxies.
_STAR_SLOPE = 0.5
_GALAXY_SLOPE = 0.8
# CCDs of a mosaic lie on a grid this many columns wide, row by row.
_GRID_COLUMNS = 2
# Stamps reach this many sigma (of the widest axis) from each source; the flux
# beyond is below 1e-5 of the total.
_STAMP_SIGMAS = 5.0


def _power_law(rng, n: int, lo: float, hi: float, slope: float) -> np.ndarray:
    """Fluxes with N(>flux) ∝ flux**-slope on [lo, hi], sampled by strata.

    One draw in each of ``n`` equal-probability strata, so that a small catalog
    still spans the whole range: its brightest source is always in the top
    ``1/n`` of the distribution, and the saturated stars do not come and go
    with the seed.
    """
    u = (rng.permutation(n) + rng.uniform(size=n)) / max(n, 1)
    a, b = lo**-slope, hi**-slope
    return (b + u * (a - b)) ** (-1.0 / slope)


def make_sky_catalog(
    n_stars: int,
    n_galaxies: int,
    *,
    ra: float = 150.0,
    dec: float = 2.0,
    size: tuple[float, float] = (300.0, 300.0),
    seed: int | np.random.Generator = 0,
    flux_range: tuple[float, float] = (200.0, 3.0e6),
    galaxy_sigma_range: tuple[float, float] = GALAXY_SIGMA_RANGE,
    axis_ratio_range: tuple[float, float] = (0.4, 1.0),
) -> Table:
    """Draw the truth catalog of one sky region: point-like stars and galaxies.

    Sources lie uniformly over a box of the gnomonic (tangent) plane centred on
    ``(ra, dec)``. Fluxes follow power laws, N(>flux) ∝ flux**-0.5 for stars and
    flux**-0.8 for galaxies (more faint sources than bright), on ``flux_range``.
    Galaxies are elliptical Gaussians, so that their convolution with a Gaussian
    PSF is exact: sigma log-uniform on ``galaxy_sigma_range``, axis ratio uniform
    on ``axis_ratio_range``, position angle uniform.

    Parameters
    ----------
    n_stars, n_galaxies : int
        Numbers of sources of each kind.
    ra, dec : float
        Centre of the region, degrees (ICRS).
    size : tuple of float
        Width (along RA) and height (along Dec) of the region, arcsec.
    seed : int or numpy.random.Generator
        Seed of, or the generator for, every random draw.
    flux_range : tuple of float
        Faintest and brightest flux, in ADU at zero point 27.
    galaxy_sigma_range : tuple of float
        Range of the intrinsic sigma of galaxies' major axes, arcsec.
    axis_ratio_range : tuple of float
        Range of galaxies' minor-to-major axis ratio.

    Returns
    -------
    astropy.table.Table
        One row per source: ``id`` (from 1), ``ra``, ``dec`` (deg), ``flux``
        (ADU at zero point 27), ``mag`` (``27 - 2.5 log10 flux``), ``kind``
        ("star" or "galaxy"), ``sigma_major``, ``sigma_minor`` (intrinsic
        Gaussian sigma, arcsec) and ``theta`` (position angle of the major axis,
        degrees east of north); the last three are 0 for stars.

    Examples
    --------
    >>> cat = make_sky_catalog(3, 2, seed=1)
    >>> cat["kind"].tolist(), bool((cat["flux"] >= 200).all())
    (['star', 'star', 'star', 'galaxy', 'galaxy'], True)
    >>> cat.colnames
    ['id', 'ra', 'dec', 'flux', 'mag', 'kind', 'sigma_major', 'sigma_minor', 'theta']
    """
    from astropy.table import Table
    from astropy.wcs import WCS

    if n_stars < 0 or n_galaxies < 0:
        msg = f"numbers of sources must be >= 0, got {n_stars} and {n_galaxies}"
        raise ValueError(msg)
    lo, hi = flux_range
    if not 0 < lo < hi:
        msg = f"flux_range must be 0 < faintest < brightest, got {flux_range}"
        raise ValueError(msg)
    # Offsets east and north in the tangent plane, deprojected by the same TAN
    # projection that the exposures' WCS use.
    rng = np.random.default_rng(seed)
    n = n_stars + n_galaxies
    xi = rng.uniform(-0.5, 0.5, n) * size[0]
    eta = rng.uniform(-0.5, 0.5, n) * size[1]
    plane = WCS(naxis=2)
    plane.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    plane.wcs.crval = [ra, dec]
    plane.wcs.crpix = [1.0, 1.0]
    plane.wcs.cd = np.eye(2) / 3600.0
    src_ra, src_dec = plane.pixel_to_world_values(xi, eta)

    flux = np.concatenate(
        [
            _power_law(rng, n_stars, lo, hi, _STAR_SLOPE),
            _power_law(rng, n_galaxies, lo, hi, _GALAXY_SLOPE),
        ]
    )
    s_lo, s_hi = galaxy_sigma_range
    major = np.exp(rng.uniform(np.log(s_lo), np.log(s_hi), n_galaxies))
    minor = major * rng.uniform(*axis_ratio_range, n_galaxies)
    theta = rng.uniform(0.0, 180.0, n_galaxies)
    zeros = np.zeros(n_stars)
    return Table(
        {
            "id": np.arange(1, n + 1, dtype=np.int64),
            "ra": np.asarray(src_ra, np.float64) % 360.0,
            "dec": np.asarray(src_dec, np.float64),
            "flux": flux,
            "mag": REFERENCE_MAGZERO - 2.5 * np.log10(flux),
            "kind": np.array(["star"] * n_stars + ["galaxy"] * n_galaxies, "U6"),
            "sigma_major": np.concatenate([zeros, major]),
            "sigma_minor": np.concatenate([zeros, minor]),
            "theta": np.concatenate([zeros, theta]),
        }
    )


def _pixel_covariances(catalog, wcs, psf_sigma: float) -> np.ndarray:
    """Covariance (pixels²) of each source's image: intrinsic shape plus PSF.

    The intrinsic covariance on the sky (east, north, arcsec) is carried into
    pixels by the local Jacobian of the WCS, taken by central differences, so
    that rotation, parity and scale all come from the header itself.
    """
    ra = np.asarray(catalog["ra"], np.float64)
    dec = np.asarray(catalog["dec"], np.float64)
    major = np.asarray(catalog["sigma_major"], np.float64)
    minor = np.asarray(catalog["sigma_minor"], np.float64)
    theta = np.deg2rad(np.asarray(catalog["theta"], np.float64))
    cov = np.zeros((len(ra), 2, 2))
    cov[:, 0, 0] = cov[:, 1, 1] = psf_sigma**2
    ext = np.flatnonzero(major > 0)
    if ext.size == 0:
        return cov
    h = 0.5 / 3600.0  # half a step, degrees
    r, d = ra[ext], dec[ext]
    cosd = np.cos(np.deg2rad(d))
    east = np.subtract(
        wcs.world_to_pixel_values(r + h / cosd, d),
        wcs.world_to_pixel_values(r - h / cosd, d),
    )
    north = np.subtract(
        wcs.world_to_pixel_values(r, d + h), wcs.world_to_pixel_values(r, d - h)
    )
    jac = np.stack([east, north], axis=-1).transpose(1, 0, 2)  # (n, pix, sky)
    # Major axis along position angle theta, measured from north through east.
    u = np.stack([np.sin(theta[ext]), np.cos(theta[ext])], axis=-1)
    v = np.stack([np.cos(theta[ext]), -np.sin(theta[ext])], axis=-1)
    sky = major[ext, None, None] ** 2 * u[:, :, None] * u[:, None, :]
    sky += minor[ext, None, None] ** 2 * v[:, :, None] * v[:, None, :]
    cov[ext] += jac @ sky @ jac.transpose(0, 2, 1)
    return cov


def render_exposure(
    catalog,
    wcs: WCS,
    shape: tuple[int, int],
    *,
    psf_fwhm: float,
    magzero: float = REFERENCE_MAGZERO,
    oversample: int = 5,
) -> np.ndarray:
    """Render a catalog's sources, without sky or noise, onto one exposure.

    Each source is an elliptical Gaussian whose covariance is its intrinsic one
    (zero for stars) plus the PSF's, placed where ``wcs`` puts its ``ra, dec``.
    Pixels are integrated by ``oversample``² sub-pixel samples on a stamp of
    ±5 sigma, so a source well inside the image sums to its flux in ADU,
    ``flux * 10**(0.4 * (magzero - 27))``, to better than 1e-4.

    Parameters
    ----------
    catalog : table
        Columns as :func:`make_sky_catalog` returns (``ra``, ``dec``, ``flux``,
        ``sigma_major``, ``sigma_minor``, ``theta``).
    wcs : astropy.wcs.WCS
        Celestial WCS of the exposure.
    shape : tuple of int
        Image shape ``(ny, nx)``.
    psf_fwhm : float
        FWHM of the circular Gaussian PSF, pixels.
    magzero : float
        Zero point of the exposure: ``mag = magzero - 2.5 log10(ADU)``.
    oversample : int
        Sub-pixel samples per pixel along each axis.

    Returns
    -------
    numpy.ndarray
        float64 image of shape ``shape``, ADU.

    Examples
    --------
    >>> from astropy.wcs import WCS
    >>> w = WCS(naxis=2)
    >>> w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    >>> w.wcs.crval, w.wcs.crpix = [150.0, 2.0], [32.5, 32.5]
    >>> w.wcs.cd = [[-0.5 / 3600, 0.0], [0.0, 0.5 / 3600]]
    >>> cat = make_sky_catalog(1, 1, size=(4.0, 4.0))
    >>> img = render_exposure(cat, w, (64, 64), psf_fwhm=3.0)
    >>> bool(abs(img.sum() / cat["flux"].sum() - 1) < 1e-4)
    True
    """
    ny, nx = (int(n) for n in shape)
    image = np.zeros((ny, nx), np.float64)
    if len(catalog) == 0:
        return image
    ra = np.asarray(catalog["ra"], np.float64)
    dec = np.asarray(catalog["dec"], np.float64)
    x, y = (np.asarray(c, np.float64) for c in wcs.world_to_pixel_values(ra, dec))
    cov = _pixel_covariances(catalog, wcs, psf_fwhm / FWHM_PER_SIGMA)
    adu = np.asarray(catalog["flux"], np.float64) * 10 ** (
        0.4 * (magzero - REFERENCE_MAGZERO)
    )
    radius = np.ceil(_STAMP_SIGMAS * np.sqrt(np.linalg.eigvalsh(cov)[:, -1]))
    radius = radius.astype(np.int64)
    sub = (np.arange(oversample) + 0.5) / oversample - 0.5  # offsets in a pixel
    visible = (
        (x + radius >= -0.5)
        & (x - radius <= nx - 0.5)
        & (y + radius >= -0.5)
        & (y - radius <= ny - 0.5)
    )
    for k in np.flatnonzero(visible):
        cx, cy, r = round(x[k]), round(y[k]), radius[k]
        xa, xb = max(cx - r, 0), min(cx + r + 1, nx)
        ya, yb = max(cy - r, 0), min(cy + r + 1, ny)
        if xa >= xb or ya >= yb:
            continue
        dx = (np.arange(xa, xb)[:, None] + sub).ravel() - x[k]
        dy = (np.arange(ya, yb)[:, None] + sub).ravel() - y[k]
        (cxx, cxy), (_, cyy) = cov[k]
        det = cxx * cyy - cxy * cxy
        q = (
            cyy * dx[None, :] ** 2
            - 2.0 * cxy * dx[None, :] * dy[:, None]
            + cxx * dy[:, None] ** 2
        ) / det
        norm = adu[k] / (2.0 * np.pi * np.sqrt(det) * oversample**2)
        stamp = np.exp(-0.5 * q).reshape(yb - ya, oversample, xb - xa, oversample)
        image[ya:yb, xa:xb] += norm * stamp.sum(axis=(1, 3))
    return image


def _ccd_centres(ccds: int, ccd_shape, gap: float) -> np.ndarray:
    """Centre of each CCD from the field centre, pixels: a grid, row by row."""
    ny, nx = ccd_shape
    ncol = min(ccds, _GRID_COLUMNS)
    nrow = -(-ccds // ncol)
    c = np.arange(ccds)
    return np.stack(
        [
            (c % ncol - (ncol - 1) / 2) * (nx + gap),
            (c // ncol - (nrow - 1) / 2) * (ny + gap),
        ],
        axis=-1,
    )


def _survey_size(centres, ccd_shape, scale, dither, rotation, psf_fwhm):
    """Width and height (arcsec) of the region that any visit can cover.

    The mosaic dithered and rotated as far as allowed, plus room for the wings
    of the widest source to fall on a CCD from outside it.
    """
    ny, nx = ccd_shape
    hx = np.abs(centres[:, 0]).max() + nx / 2 + dither * nx
    hy = np.abs(centres[:, 1]).max() + ny / 2 + dither * ny
    c, s = np.cos(np.deg2rad(rotation)), np.sin(np.deg2rad(rotation))
    widest = np.hypot(GALAXY_SIGMA_RANGE[1], psf_fwhm / FWHM_PER_SIGMA * scale)
    margin = _STAMP_SIGMAS * widest + scale
    return (
        2.0 * ((hx * c + hy * s) * scale + margin),
        2.0 * ((hx * s + hy * c) * scale + margin),
    )


def _tan_header(ra, dec, scale, rotation, offset, ccd_shape):
    """TAN WCS of one CCD, tangent at the field centre, as a file will hold it.

    Pixels map to the tangent plane by one rotation about the field centre, with
    east to the left; the CCD's centre sits at ``offset`` pixels from the field
    centre in the rotated frame.
    """
    from astropy.io import fits

    ny, nx = ccd_shape
    phi = np.deg2rad(rotation)
    c, s = np.cos(phi), np.sin(phi)
    cd = scale / 3600.0 * np.array([[-c, s], [s, c]])
    h = fits.Header()
    h["WCSAXES"] = 2
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN", "DEC--TAN"
    h["CUNIT1"], h["CUNIT2"] = "deg", "deg"
    h["CRVAL1"], h["CRVAL2"] = float(ra), float(dec)
    h["CRPIX1"] = (nx + 1) / 2 - float(offset[0])
    h["CRPIX2"] = (ny + 1) / 2 - float(offset[1])
    for i in range(2):
        for j in range(2):
            h[f"CD{i + 1}_{j + 1}"] = float(cd[i, j])
    h["RADESYS"], h["EQUINOX"] = "ICRS", 2000.0
    # Floats lose digits in header cards: render with what readers will see.
    return fits.Header.fromstring(h.tostring())
