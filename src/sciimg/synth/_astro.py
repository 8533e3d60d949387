"""A synthetic sky survey: visits of a CCD mosaic as LSST-style FITS, with truth."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sciimg.io import DEFAULT_MASK_BITS
from sciimg.synth._detector import _expose
from sciimg.synth._folder import check_output_folder
from sciimg.synth._sky import (
    _ccd_centres,
    _survey_size,
    _tan_header,
    make_sky_catalog,
    render_exposure,
)

__all__ = ["AstroSurvey", "write_astro_survey"]

# Independent random streams, so that visit v looks the same in a survey of 4
# visits and of 24, and the sky does not depend on the number of visits at all.
_VISIT_STREAM, _EXPOSURE_STREAM = 1, 2
_SKY_GRADIENT = (0.05, 0.10)  # relative change of the sky across one CCD
_MJD0, _CADENCE = 60400.0, 1.0 / 24.0  # days
_EXPTIME = 60.0  # seconds
_EXPOSURE_NAME = re.compile(r"visit-\d+(/ccd-\d+\.fits)?")


@dataclass
class AstroSurvey:
    """What :func:`write_astro_survey` wrote, and the geometry it shares."""

    root: Path
    exposures: list[Path]  # visit-major: visit-0/ccd-0.fits, visit-0/ccd-1.fits…
    catalog: Path  # truth/catalog.parquet
    exposure_table: Path  # truth/exposures.parquet
    cosmic_rays: Path  # truth/cosmic_rays.parquet
    ra: float  # field centre, deg: the tangent point of every exposure's WCS
    dec: float
    pixel_scale: float  # arcsec per pixel
    visits: int
    ccds: int
    ccd_shape: tuple[int, int]  # (ny, nx)
    n_stars: int
    n_galaxies: int
    seed: int

    def exposure(self, visit: int, ccd: int) -> Path:
        """Path of one exposure."""
        return self.root / f"visit-{visit}" / f"ccd-{ccd}.fits"


@dataclass
class _Visit:
    psf_fwhm: float  # pixels
    magzero: float
    sky: float  # ADU at the field centre
    gradient: np.ndarray  # relative change of the sky per pixel, along x and y
    dither: np.ndarray  # pixels, along the CCDs' x and y
    rotation: float  # degrees
    mjd: float


def _check_range(name: str, lo: float, hi: float, *, low: float = 0.0) -> None:
    if not low <= lo <= hi:
        msg = f"{name} must satisfy {low} <= low <= high, got ({lo}, {hi})"
        raise ValueError(msg)


def _draw_visit(seed, visit, ccd_shape, opts) -> _Visit:
    rng = np.random.default_rng([seed, _VISIT_STREAM, visit])
    angle = rng.uniform(0.0, 2.0 * np.pi)
    # A gradient of 5–10 % across a CCD, along a random direction.
    gradient = rng.uniform(*_SKY_GRADIENT) / float(np.mean(ccd_shape))
    return _Visit(
        psf_fwhm=float(rng.uniform(*opts["psf_fwhm_range"])),
        magzero=float(rng.uniform(*opts["magzero_range"])),
        sky=float(rng.uniform(*opts["sky_range"])),
        gradient=gradient * np.array([np.cos(angle), np.sin(angle)]),
        dither=rng.uniform(-1.0, 1.0, 2) * opts["dither"] * np.array(ccd_shape[::-1]),
        rotation=float(rng.uniform(-1.0, 1.0) * opts["rotation"]),
        mjd=_MJD0 + visit * _CADENCE,
    )


def _simulate(catalog, wcs, visit: _Visit, centre, ccd_shape, rng, opts) -> dict:
    """One exposure: the sky with its gradient, the sources, then the detector."""
    ny, nx = ccd_shape
    sky = visit.sky * (1.0 + float(visit.gradient @ centre))
    slope = visit.sky * visit.gradient  # ADU per pixel
    x = np.arange(nx) - (nx - 1) / 2
    y = np.arange(ny) - (ny - 1) / 2
    model = sky + slope[0] * x[None, :] + slope[1] * y[:, None]
    model += render_exposure(
        catalog, wcs, ccd_shape, psf_fwhm=visit.psf_fwhm, magzero=visit.magzero
    )
    mean_cr = opts["cosmic_rays_per_ccd"]
    if mean_cr is None:
        mean_cr = 3.0 * ny * nx / 256**2
    sim = _expose(
        model,
        rng,
        gain=opts["gain"],
        read_noise=opts["read_noise"],
        saturate=opts["saturate"],
        cosmic_rays=mean_cr,
    )
    return {**sim, "sky": sky, "slope": slope}


def _write_exposure(path: Path, primary, wcs_header, sim: dict) -> None:
    from astropy.io import fits

    from sciimg.io import atomic_path

    image_hdr = wcs_header.copy()
    image_hdr["BUNIT"] = "adu"
    mask_hdr = wcs_header.copy()
    for name, bit in DEFAULT_MASK_BITS.items():
        # Names over 8 characters need HIERARCH cards, as LSST writes them.
        key = f"MP_{name}" if len(name) <= 5 else f"HIERARCH MP_{name}"
        mask_hdr[key] = (bit, f"mask bit of plane {name}")
    var_hdr = wcs_header.copy()
    var_hdr["BUNIT"] = "adu2"
    hdul = fits.HDUList(
        [
            fits.PrimaryHDU(header=primary),
            fits.ImageHDU(sim["image"], image_hdr, name="IMAGE"),
            fits.ImageHDU(sim["mask"], mask_hdr, name="MASK"),
            fits.ImageHDU(sim["variance"], var_hdr, name="VARIANCE"),
        ]
    )
    with atomic_path(path, suffix=".fits") as tmp:
        hdul.writeto(tmp)


def _write_parquet(path: Path, columns: dict) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sciimg.io import atomic_path

    with atomic_path(path, suffix=".parquet") as tmp:
        pq.write_table(pa.table(columns), tmp)


def _remove_stale(out: Path, written: set[Path]) -> None:
    """Drop exposures of an earlier survey that this one did not rewrite."""
    for path in sorted(out.glob("visit-*/ccd-*.fits")):
        name = path.relative_to(out).as_posix()
        if _EXPOSURE_NAME.fullmatch(name) and path not in written:
            path.unlink()
    for folder in sorted(out.glob("visit-*")):
        empty = folder.is_dir() and not any(folder.iterdir())
        if _EXPOSURE_NAME.fullmatch(folder.name) and empty:
            folder.rmdir()


def write_astro_survey(
    out: str | Path,
    *,
    visits: int = 4,
    ccds: int = 4,
    ccd_shape: tuple[int, int] = (256, 256),
    seed: int = 0,
    n_stars: int | None = None,
    n_galaxies: int | None = None,
    ra: float = 150.0,
    dec: float = 2.0,
    pixel_scale: float = 0.5,
    density: float = 10.0,
    galaxy_fraction: float = 0.3,
    flux_range: tuple[float, float] = (200.0, 3.0e6),
    psf_fwhm_range: tuple[float, float] = (2.5, 4.0),
    magzero_range: tuple[float, float] = (26.8, 27.2),
    sky_range: tuple[float, float] = (500.0, 1500.0),
    gain: float = 2.0,
    read_noise: float = 5.0,
    saturate: float = 30000.0,
    cosmic_rays_per_ccd: float | None = None,
    dither: float = 0.1,
    rotation: float = 0.5,
    gap: int = 10,
    overwrite: bool = False,
) -> AstroSurvey:
    """Write a synthetic survey of one sky region, with its ground truth.

    Every visit images the same field with a mosaic of ``ccds`` CCDs (a grid of
    two columns, ``gap`` pixels apart), dithered by up to ``dither`` of a CCD and
    rotated by up to ``rotation`` degrees about the field centre. Each visit has
    its own Gaussian PSF, zero point and sky (with a gradient of 5–10 % across a
    CCD). Pixels get Poisson and read noise; each CCD has one bad column (0,
    flagged BAD), saturated pixels clipped to ``saturate`` (flagged SAT), and
    cosmic rays that are added but not flagged. Layout::

        OUT/visit-<v>/ccd-<c>.fits      HDUs: primary, IMAGE, MASK, VARIANCE
        OUT/truth/catalog.parquet       one row per source
        OUT/truth/exposures.parquet     one row per exposure
        OUT/truth/cosmic_rays.parquet   one row per cosmic-ray pixel

    Parameters
    ----------
    out : str or Path
        Survey folder; created, and it must be empty unless ``overwrite``.
    visits, ccds : int
        Numbers of visits and of CCDs per visit.
    ccd_shape : tuple of int
        ``(ny, nx)`` of each CCD.
    seed : int
        Seed of everything. The sky depends on ``seed``, the mosaic and the
        options, not on ``visits``; visit ``v`` is the same in any survey.
    n_stars, n_galaxies : int, optional
        Numbers of sources; by default ``density`` over the area that the
        visits can cover (plus a margin), split by ``galaxy_fraction``.
    ra, dec : float
        Field centre, degrees (ICRS); the tangent point of every WCS.
    pixel_scale : float
        Arcsec per pixel.
    density : float
        Sources per square arcminute, when numbers are not given.
    galaxy_fraction : float
        Fraction of the sources that are galaxies.
    flux_range : tuple of float
        Faintest and brightest flux (ADU at zero point 27), see
        :func:`make_sky_catalog`.
    psf_fwhm_range, magzero_range, sky_range : tuple of float
        Per-visit PSF FWHM (pixels), zero point, and sky at the field centre
        (ADU), each uniform on its range.
    gain : float
        e-/ADU.
    read_noise : float
        e-.
    saturate : float
        ADU at which pixels saturate.
    cosmic_rays_per_ccd : float, optional
        Mean number of cosmic rays per CCD (Poisson); default 3 per 256².
    dither : float
        Largest dither, as a fraction of the CCD's size.
    rotation : float
        Largest rotation of a visit, degrees.
    gap : int
        Pixels between neighbouring CCDs.
    overwrite : bool
        Write into a non-empty ``out``, replacing files and removing exposures
        of an earlier survey that this one does not have.

    Returns
    -------
    AstroSurvey

    Examples
    --------
    >>> import tempfile
    >>> survey = write_astro_survey(
    ...     tempfile.mkdtemp(), visits=2, ccds=2, ccd_shape=(24, 32)
    ... )
    >>> [p.relative_to(survey.root).as_posix() for p in survey.exposures]
    ['visit-0/ccd-0.fits', 'visit-0/ccd-1.fits',
     'visit-1/ccd-0.fits', 'visit-1/ccd-1.fits']
    >>> survey.catalog.name, survey.n_stars + survey.n_galaxies > 0
    ('catalog.parquet', True)
    """
    from astropy.io import fits
    from astropy.wcs import WCS

    out = Path(out)
    ccd_shape = (int(ccd_shape[0]), int(ccd_shape[1]))
    if visits < 1 or ccds < 1 or min(ccd_shape) < 1:
        msg = f"need visits, ccds >= 1 and a non-empty ccd_shape, got {visits}, "
        msg += f"{ccds}, {ccd_shape}"
        raise ValueError(msg)
    if not 0.0 <= galaxy_fraction <= 1.0:
        msg = f"galaxy_fraction must be in [0, 1], got {galaxy_fraction}"
        raise ValueError(msg)
    _check_range("psf_fwhm_range", *psf_fwhm_range, low=1e-3)
    _check_range("sky_range", *sky_range)
    _check_range("magzero_range", *magzero_range, low=-np.inf)
    if gain <= 0 or read_noise < 0:
        msg = f"need gain > 0 and read_noise >= 0, got {gain} and {read_noise}"
        raise ValueError(msg)
    check_output_folder(out, overwrite)
    opts = {
        "psf_fwhm_range": psf_fwhm_range,
        "magzero_range": magzero_range,
        "sky_range": sky_range,
        "dither": dither,
        "rotation": rotation,
        "gain": gain,
        "read_noise": read_noise,
        "saturate": saturate,
        "cosmic_rays_per_ccd": cosmic_rays_per_ccd,
    }

    centres = _ccd_centres(ccds, ccd_shape, gap)
    size = _survey_size(
        centres, ccd_shape, pixel_scale, dither, rotation, max(psf_fwhm_range)
    )
    total = round(density * size[0] * size[1] / 3600.0)
    if n_galaxies is None:
        n_galaxies = round(total * galaxy_fraction)
    if n_stars is None:
        n_stars = total - round(total * galaxy_fraction)
    catalog = make_sky_catalog(
        n_stars, n_galaxies, ra=ra, dec=dec, size=size, seed=seed, flux_range=flux_range
    )

    exposures, rows, rays = [], [], []
    for v in range(visits):
        visit = _draw_visit(seed, v, ccd_shape, opts)
        for k in range(ccds):
            offset = centres[k] + visit.dither
            header = _tan_header(
                ra, dec, pixel_scale, visit.rotation, offset, ccd_shape
            )
            rng = np.random.default_rng([seed, _EXPOSURE_STREAM, v, k])
            sim = _simulate(
                catalog, WCS(header), visit, centres[k], ccd_shape, rng, opts
            )
            primary = fits.Header(
                [
                    ("VISIT", v, "visit number"),
                    ("CCDNUM", k, "CCD number in the mosaic"),
                    ("MJD-OBS", visit.mjd, "start of the exposure, MJD (UTC)"),
                    ("EXPTIME", _EXPTIME, "exposure time, s"),
                    ("FILTER", "g", "filter band"),
                    ("GAIN", gain, "e-/ADU"),
                    ("RDNOISE", read_noise, "read noise, e-"),
                    ("SATURATE", saturate, "saturation level, ADU"),
                    ("MAGZERO", visit.magzero, "mag = MAGZERO - 2.5 log10(ADU)"),
                    ("PSFFWHM", visit.psf_fwhm, "synthetic truth: PSF FWHM, pixels"),
                    ("SKYLEVEL", sim["sky"], "sky at the CCD centre, ADU"),
                ]
            )
            path = out / f"visit-{v}" / f"ccd-{k}.fits"
            _write_exposure(path, primary, header, sim)
            exposures.append(path)
            rows.append(
                {
                    "visit": v,
                    "ccd": k,
                    "path": path.relative_to(out).as_posix(),
                    "psf_fwhm": visit.psf_fwhm,
                    "magzero": visit.magzero,
                    "sky": sim["sky"],
                    "sky_slope_x": float(sim["slope"][0]),
                    "sky_slope_y": float(sim["slope"][1]),
                    "gain": float(gain),
                    "read_noise": float(read_noise),
                    "saturate": float(saturate),
                    "mjd": visit.mjd,
                    "bad_x": sim["bad"][0],
                    "bad_y0": sim["bad"][1],
                    "bad_y1": sim["bad"][2],
                }
            )
            rays += [(v, k, *ray) for ray in sim["rays"]]

    truth = out / "truth"
    columns = {name: np.asarray(catalog[name]) for name in catalog.colnames}
    _write_parquet(truth / "catalog.parquet", columns)
    _write_parquet(
        truth / "exposures.parquet",
        {name: [row[name] for row in rows] for name in rows[0]},
    )
    ray_columns = np.array(rays, dtype=np.float64).reshape(-1, 5).T
    _write_parquet(
        truth / "cosmic_rays.parquet",
        {
            "visit": ray_columns[0].astype(np.int64),
            "ccd": ray_columns[1].astype(np.int64),
            "x": ray_columns[2].astype(np.int64),
            "y": ray_columns[3].astype(np.int64),
            "adu": ray_columns[4],
        },
    )
    if overwrite:
        _remove_stale(out, set(exposures))
    return AstroSurvey(
        root=out,
        exposures=exposures,
        catalog=truth / "catalog.parquet",
        exposure_table=truth / "exposures.parquet",
        cosmic_rays=truth / "cosmic_rays.parquet",
        ra=float(ra),
        dec=float(dec),
        pixel_scale=float(pixel_scale),
        visits=visits,
        ccds=ccds,
        ccd_shape=ccd_shape,
        n_stars=int(n_stars),
        n_galaxies=int(n_galaxies),
        seed=seed,
    )
