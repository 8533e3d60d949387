"""The neuroscience pipeline of Mehta et al. (2017) as registered steps."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from sciimg.neuro import (
    DTI_MAPS,
    estimate_sigma,
    fit_dti,
    mean_b0,
    median_otsu_mask,
    nlmeans,
)
from sciimg.pipeline.steps import register_step
from sciimg.pipeline.strict import StrictModel

__all__ = ["DTIParams", "DenoiseParams", "MaskParams"]


class _Params(StrictModel):
    implementation: Literal["fast", "reference"] = Field(
        "fast",
        description="sciimg's compiled kernels, or the reference library (dipy) "
        "called directly",
    )


class MaskParams(_Params):
    """``steps.mask``: mean b0 and ``median_otsu`` brain mask."""

    b0_threshold: float = Field(10.0, ge=0, description="b <= this counts as b0")
    median_radius: int = Field(4, ge=1, description="median filter radius, voxels")
    numpass: int = Field(2, ge=1, description="median filter passes")
    dilate: int | None = Field(1, ge=0, description="binary dilation iterations")
    finalize_mask: bool = Field(False, description="remove islands, fill holes")


class DenoiseParams(_Params):
    """``steps.denoise``: per-volume noise estimate and non-local means."""

    method: Literal["classic", "blockwise"] = "classic"
    patch_radius: int = Field(1, ge=0)
    block_radius: int | None = Field(None, ge=1, description="5 classic, 2 blockwise")
    rician: bool = True
    n_coils: Literal[0, 1, 4, 6, 8, 12, 16, 20, 24, 32, 64] = Field(
        0, description="receiver coils for estimate_sigma's bias correction"
    )


class DTIParams(_Params):
    """``steps.dti``: tensor fit and its maps."""

    fit_method: Literal["WLS", "OLS", "NLLS"] = "WLS"


@register_step("mask", pipeline="neuro", outputs=("mean_b0", "mask"), params=MaskParams)
def mask_step(
    dwi,
    gtab,
    chunk_memory=None,
    source=None,
    *,
    b0_threshold,
    median_radius,
    numpass,
    dilate,
    finalize_mask,
    implementation,
):
    b0 = mean_b0(dwi, gtab, threshold=b0_threshold, chunk_memory=chunk_memory)
    mask = median_otsu_mask(
        b0,
        median_radius=median_radius,
        numpass=numpass,
        dilate=dilate,
        finalize_mask=finalize_mask,
        source=source,
        implementation=implementation,
    )
    return {"mean_b0": b0, "mask": mask}


@register_step("denoise", pipeline="neuro", outputs=("denoised",), params=DenoiseParams)
def denoise_step(
    dwi,
    mask,
    *,
    method,
    patch_radius,
    block_radius,
    rician,
    n_coils,
    implementation,
):
    sigma = estimate_sigma(dwi, n_coils=n_coils)
    return {
        "denoised": nlmeans(
            dwi,
            sigma,
            mask=mask,
            method=method,
            patch_radius=patch_radius,
            block_radius=block_radius,
            rician=rician,
            implementation=implementation,
        )
    }


@register_step(
    "dti",
    pipeline="neuro",
    outputs=DTI_MAPS,
    params=DTIParams,
    dims={
        "rgb": ("x", "y", "z", "rgb"),
        "evals": ("x", "y", "z", "eigenvalue"),
        "evecs": ("x", "y", "z", "component", "eigenvector"),
    },
)
def dti_step(
    denoised, gtab, mask, chunk_memory=None, source=None, *, fit_method, implementation
):
    return fit_dti(
        denoised,
        gtab,
        mask=mask,
        fit_method=fit_method,
        chunk_memory=chunk_memory,
        source=source,
        implementation=implementation,
    )
