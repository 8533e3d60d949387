"""Diffusion-MRI steps on dask arrays: b0 mean, brain mask, denoising, tensor fit.

Each function takes and returns dask arrays (no I/O, no cluster) and matches dipy
given the same parameters.
"""

from sciimg.neuro._b0 import b0_indices, mean_b0
from sciimg.neuro._denoise import estimate_sigma, nlmeans
from sciimg.neuro._dti import DTI_MAPS, fit_dti, tensor_maps
from sciimg.neuro._mask import median_otsu_mask

__all__ = [
    "DTI_MAPS",
    "b0_indices",
    "estimate_sigma",
    "fit_dti",
    "mean_b0",
    "median_otsu_mask",
    "nlmeans",
    "tensor_maps",
]
