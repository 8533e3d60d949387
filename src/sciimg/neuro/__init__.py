"""Diffusion-MRI steps on dask arrays: b0 mean, brain mask, denoising, tensor fit.

Each function takes and returns dask arrays (no I/O, no cluster) and matches dipy
given the same parameters.
"""

import contextlib
import warnings

# dipy imports tqdm.auto, which in a Jupyter kernel without ipywidgets warns
# "IProgress not found" and falls back to text bars. sciimg shows no dipy
# progress bars, so the fallback is taken here once, quietly.
with warnings.catch_warnings(), contextlib.suppress(ImportError):
    warnings.simplefilter("ignore")
    import tqdm.auto  # noqa: F401

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
