"""What an exposure's FITS header says about its calibration: photometric scale,
gain, read noise, saturation level and, when the survey measured it, the PSF."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from sciimg.errors import InputError

__all__ = ["HeaderCalibration", "header_calibration", "header_value"]

#: Saturation keywords tried after the configured one: ``SATURATE`` is the one
#: SExtractor reads and DECam's and LCO's pipelines write; ``SATLEVEL`` is
#: written by some reduction scripts.
SATURATION_KEYS = ("SATURATE", "SATLEVEL")


def header_value(header: Mapping[str, Any], key: str | None, default=None):
    """``header[key]``, or ``default`` when there is no key or no such card.

    Examples
    --------
    >>> header_value({"GAIN": 4.0}, "GAIN"), header_value({}, "GAIN", 1.0)
    (4.0, 1.0)
    """
    if key is None or key not in header:
        return default
    return header[key]


@dataclass(frozen=True)
class HeaderCalibration:
    """The calibration of one exposure as its header gives it.

    Attributes
    ----------
    scale : float
        Factor to the reference zero point: ``10**(0.4 (reference - ZP))``, 1
        without a zero point.
    gain : float
        Electrons per ADU (1 without the keyword).
    read_noise : float
        Electrons (0 without the keyword).
    saturate : float or None
        Saturation level in ADU, None if unknown.
    psf_fwhm : float or None
        PSF FWHM in pixels if the header gives one (then it is not measured).
    """

    scale: float
    gain: float
    read_noise: float
    saturate: float | None
    psf_fwhm: float | None


def saturation_level(header, key: str | None, source: str) -> float | None:
    """The saturation level in ADU from the header, or None if it says none.

    ``key`` is tried first, then :data:`SATURATION_KEYS`. A level of zero or
    below means unknown (some observatories write 0 there; as a level it would
    flag every pixel), and the next keyword is tried.

    Raises
    ------
    InputError
        The keyword holds something other than a number.

    Examples
    --------
    >>> saturation_level({"SATLEVEL": 60000}, "SATURATE", "x.fits")
    60000.0
    >>> saturation_level({"SATURATE": 0.0}, "SATURATE", "x.fits")
    """
    for name in dict.fromkeys([k for k in (key, *SATURATION_KEYS) if k]):
        if name not in header:
            continue
        value = header[name]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InputError(source, f"{name} = {value!r} is not a number")
        if np.isfinite(value) and value > 0:
            return float(value)
    return None


def header_calibration(
    header: Mapping[str, Any],
    *,
    zero_point_key: str | None = "MAGZERO",
    reference_zero_point: float = 27.0,
    gain_key: str | None = "GAIN",
    read_noise_key: str | None = "RDNOISE",
    saturate_key: str | None = "SATURATE",
    psf_fwhm_key: str | None = None,
    source: str = "exposure",
) -> HeaderCalibration:
    """Read an exposure's calibration from its header keywords.

    Parameters
    ----------
    header : mapping
        The exposure's header (an astropy ``Header`` or a dict of keywords).
    zero_point_key, gain_key, read_noise_key, saturate_key, psf_fwhm_key : str
        Keywords to read; None to ignore one.
    reference_zero_point : float
        Zero point every exposure is scaled to.
    source : str
        The file, for error messages.

    Examples
    --------
    >>> cal = header_calibration({"MAGZERO": 26.0, "GAIN": 4.0, "SATURATE": 6e4})
    >>> round(cal.scale, 4), cal.gain, cal.read_noise, cal.saturate, cal.psf_fwhm
    (2.5119, 4.0, 0.0, 60000.0, None)
    """
    zp = header_value(header, zero_point_key)
    psf = header_value(header, psf_fwhm_key)
    return HeaderCalibration(
        scale=1.0 if zp is None else 10 ** (0.4 * (reference_zero_point - float(zp))),
        gain=float(header_value(header, gain_key, 1.0)),
        read_noise=float(header_value(header, read_noise_key, 0.0)),
        saturate=saturation_level(header, saturate_key, source),
        psf_fwhm=None if psf is None else float(psf),
    )
