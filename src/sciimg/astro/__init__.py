"""The astronomy pipeline's steps as functions on (dask) arrays: calibrate, sky map,
warp, co-add, detect. No I/O and no cluster here; see :mod:`sciimg.pipeline`."""

from sciimg.astro._calibrate import calibrate, detect_cosmic_rays, estimate_background
from sciimg.astro._coadd import clipped_mean, coadd
from sciimg.astro._detect import CATALOG_COLUMNS, FLAG_NO_DATA, FLAG_SATURATED, detect
from sciimg.astro._footprint import footprint_box, warp_footprint
from sciimg.astro._header import HeaderCalibration, header_calibration
from sciimg.astro._masks import COADD_BITS, bitmask, whole
from sciimg.astro._patch import WarpSource, coadd_patch
from sciimg.astro._psf import measure_psf_fwhm, target_psf_fwhm
from sciimg.astro._qc import plot_detections
from sciimg.astro._skymap import Patch, SkyMap, make_skymap
from sciimg.astro._warp import WARP_BAD, input_box, psf_match, psf_match_sigma, warp

__all__ = [
    "CATALOG_COLUMNS",
    "COADD_BITS",
    "FLAG_NO_DATA",
    "FLAG_SATURATED",
    "WARP_BAD",
    "HeaderCalibration",
    "Patch",
    "SkyMap",
    "WarpSource",
    "bitmask",
    "calibrate",
    "clipped_mean",
    "coadd",
    "coadd_patch",
    "detect",
    "detect_cosmic_rays",
    "estimate_background",
    "footprint_box",
    "header_calibration",
    "input_box",
    "make_skymap",
    "measure_psf_fwhm",
    "plot_detections",
    "psf_match",
    "psf_match_sigma",
    "target_psf_fwhm",
    "warp",
    "warp_footprint",
    "whole",
]
