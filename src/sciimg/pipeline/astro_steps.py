"""The astronomy pipeline of Mehta et al. (2017) as registered steps.

Unlike the neuroscience chain, these steps run at two granularities: ``calibrate``
once per exposure, then ``skymap`` once, then ``coadd`` and ``detect`` once per sky
patch over the exposures that cover it. The pipeline (``astro_pipeline``) calls them in
that fixed order; the config may set their parameters but not rearrange them.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from sciimg import kernels
from sciimg.astro import (
    SkyMap,
    WarpSource,
    calibrate,
    coadd_patch,
    header_calibration,
    make_skymap,
    measure_psf_fwhm,
    whole,
)
from sciimg.pipeline.steps import register_step
from sciimg.pipeline.strict import StrictModel

__all__ = [
    "ASTRO_STEPS",
    "CalibrateParams",
    "CoaddParams",
    "DetectParams",
    "SkyMapParams",
]

#: The astronomy steps, in the only order they can run.
ASTRO_STEPS = ("calibrate", "skymap", "coadd", "detect")


class CalibrateParams(StrictModel):
    """``steps.calibrate``: background, cosmic rays, photometric scale, PSF size."""

    background_mesh: int = Field(64, ge=8, description="background cell, pixels")
    background_filter: int = Field(3, ge=1, description="median filter, cells")
    cosmic_rays: bool = Field(True, description="find cosmic rays (L.A.Cosmic)")
    cr_sigma: float = Field(
        6.0,
        gt=0,
        description="L.A.Cosmic sigclip (its own default 4.5 flags the "
        "cores of undersampled stars)",
    )
    cr_objlim: float = Field(8.0, gt=0, description="L.A.Cosmic objlim")
    cr_niter: int = Field(
        2,
        ge=1,
        description="L.A.Cosmic iterations, a full pass each (its own default 4 "
        "found no more than 2 on the synthetic survey, in twice the time)",
    )
    psf_threshold: float = Field(
        10.0, gt=0, description="sigma of the stars that measure the PSF"
    )
    psf_fwhm_key: str | None = Field(
        None,
        description="header keyword with the PSF FWHM in pixels, instead of "
        "measuring it",
    )
    zero_point_key: str | None = Field(
        "MAGZERO", description="header keyword of the zero point; null: no scaling"
    )
    reference_zero_point: float = Field(
        27.0, description="common zero point of calibrated fluxes"
    )
    gain_key: str = "GAIN"
    read_noise_key: str = "RDNOISE"
    saturate_key: str = Field(
        "SATURATE",
        description="header keyword of the saturation level, ADU (then SATURATE, "
        "SATLEVEL); pixels at or above it are flagged SAT",
    )


class SkyMapParams(StrictModel):
    """``steps.skymap``: the tangent-plane patches the coadds are made on."""

    patch_size: int = Field(2000, ge=16, description="inner patch side, pixels")
    border: int = Field(100, ge=0, description="overlap border, pixels")
    pixel_scale: float | None = Field(
        None, gt=0, description="arcsec per pixel; default the exposures' median"
    )
    center: tuple[float, float] | None = Field(
        None, description="[ra, dec] of the tangent point, degrees"
    )


class CoaddParams(StrictModel):
    """``steps.coadd``: PSF-matched warps, clipped inverse-variance mean."""

    nsigma: float = Field(3.0, gt=0, description="clipping threshold")
    iterations: int = Field(2, ge=0, description="clipping passes")
    clip: Literal["variance", "stack"] = Field(
        "variance",
        description="spread used for clipping: each visit's noise, or the "
        "stack's standard deviation",
    )
    psf_fwhm: float | None = Field(
        None, gt=0, description="target PSF FWHM, pixels; default the widest input"
    )
    block: int | None = Field(
        None,
        ge=16,
        description="side of the sky blocks co-added per task, pixels; default "
        "from chunk_memory: a visit stack of a quarter of it, so blocks shrink "
        "as visits grow",
    )
    implementation: Literal["fast", "reference"] = Field(
        "fast",
        description="kernels of the warp and the clipped mean: sciimg's fast "
        "ones, or reproject and NumPy as the reference",
    )


class DetectParams(StrictModel):
    """``steps.detect``: sources on each coadd, one catalog."""

    threshold: float = Field(5.0, gt=0, description="sigma of the coadd's noise")
    minarea: int = Field(5, ge=1)
    deblend_nthresh: int = Field(32, ge=1)
    deblend_cont: float = Field(0.005, ge=0, le=1)
    background_mesh: int = Field(64, ge=8)
    kron_factor: float = Field(2.5, gt=0)
    min_radius: float = Field(3.5, gt=0, description="smallest aperture radius, px")
    qc: bool = Field(True, description="write a PNG per patch with its detections")


@register_step(
    "calibrate",
    pipeline="astro",
    outputs=("image", "variance", "mask", "background", "psf_fwhm"),
    params=CalibrateParams,
)
def calibrate_step(
    exposure,
    *,
    background_mesh,
    background_filter,
    cosmic_rays,
    cr_sigma,
    cr_objlim,
    cr_niter,
    psf_threshold,
    psf_fwhm_key,
    zero_point_key,
    reference_zero_point,
    gain_key,
    read_noise_key,
    saturate_key,
):
    """Calibrate one exposure; the PSF FWHM is a lazy value computed alongside."""
    import dask

    cal = header_calibration(
        exposure.header,
        zero_point_key=zero_point_key,
        reference_zero_point=reference_zero_point,
        gain_key=gain_key,
        read_noise_key=read_noise_key,
        saturate_key=saturate_key,
        psf_fwhm_key=psf_fwhm_key,
        source=str(exposure.source),
    )
    out = calibrate(
        exposure.image,
        exposure.variance,
        exposure.mask,
        mask_bits=exposure.mask_bits,
        scale=cal.scale,
        gain=cal.gain,
        read_noise=cal.read_noise,
        saturate=cal.saturate,
        background_mesh=background_mesh,
        background_filter=background_filter,
        cosmic_rays=cosmic_rays,
        cr_sigma=cr_sigma,
        cr_objlim=cr_objlim,
        cr_niter=cr_niter,
        source=str(exposure.source),
    )
    if cal.psf_fwhm is not None:
        out["psf_fwhm"] = dask.delayed(cal.psf_fwhm)
    else:
        out["psf_fwhm"] = dask.delayed(measure_psf_fwhm, pure=True)(
            whole(out["image"]),
            whole(out["mask"]),
            variance=whole(out["variance"]),
            mask_bits=exposure.mask_bits,
            threshold=psf_threshold,
            source=str(exposure.source),
        )
    out["scale"] = cal.scale
    return out


@register_step("skymap", pipeline="astro", outputs=("skymap",), params=SkyMapParams)
def skymap_step(footprints, *, patch_size, border, pixel_scale, center) -> SkyMap:
    """The sky map over the footprints (WCS, shape) of the calibrated exposures."""
    return make_skymap(
        footprints,
        patch_size=patch_size,
        border=border,
        pixel_scale=pixel_scale,
        center=tuple(center) if center else None,
    )


@register_step(
    "coadd",
    pipeline="astro",
    outputs=("image", "variance", "depth", "mask"),
    params=CoaddParams,
)
def coadd_step(
    sources: list[WarpSource],
    patch,
    mask_bits=None,
    scratch=None,
    chunk_memory=None,
    *,
    nsigma,
    iterations,
    clip,
    psf_fwhm,
    block,
    implementation,
    device: str = "cpu",
) -> dict[str, Any]:
    """Co-add the exposures covering one patch; the warps go to ``scratch``.

    ``chunk_memory`` is the run's (``chunk_memory:`` in the config): a block
    task holds a visit stack of a quarter of it; ``device`` is the run's too
    (the warps are made on a GPU with ``"gpu"``)."""
    return coadd_patch(
        sources,
        patch.wcs,
        patch.shape,
        target_fwhm=psf_fwhm,
        mask_bits=mask_bits,
        nsigma=nsigma,
        iterations=iterations,
        clip=clip,
        chunks=block,
        chunk_memory=chunk_memory,
        name=f"coadd-{patch.id}",
        scratch=scratch,
        implementation=implementation,
        device=device,
        # Detection reads whole planes; the store rechunks them as it needs.
        whole_planes=True,
    )


@register_step("detect", pipeline="astro", outputs=("catalog",), params=DetectParams)
def detect_step(
    coadd: dict,
    patch,
    *,
    threshold,
    minarea,
    deblend_nthresh,
    deblend_cont,
    background_mesh,
    kron_factor,
    min_radius,
    qc,
):
    """Detect on one patch's coadd; a lazy catalog (astropy Table)."""
    import dask

    return dask.delayed(_detect_patch, pure=True)(
        whole(coadd["image"]),
        whole(coadd["variance"]),
        whole(coadd["mask"]),
        patch,
        dict(
            threshold=threshold,
            minarea=minarea,
            deblend_nthresh=deblend_nthresh,
            deblend_cont=deblend_cont,
            background_mesh=background_mesh,
            kron_factor=kron_factor,
            min_radius=min_radius,
        ),
    )


def _detect_patch(image, variance, mask, patch, options):
    # sep's own 3×3 filter, not one the size of the coadd's PSF: with the wider
    # kernel sep's footprints swallowed faint neighbours of bright sources
    # without deblending them (seen on the demo survey), costing completeness.
    return kernels.detect_sources(
        np.asarray(image),
        np.asarray(variance),
        np.asarray(mask),
        wcs=patch.wcs,
        patch=patch,
        **options,
    )
