"""NumPy-in, NumPy-out kernels: the per-chunk science every engine runs.

sciimg's Dask steps map these functions over blocks, and the benchmark engines
(serial, DuckDB, Spark) call the same ones, so that engine comparisons run
identical science. Each kernel has two implementations, chosen per call with
``implementation=``:

``"fast"`` (the default)
    sciimg's own compiled code (numba) where it exists, equal to the reference
    within the tolerance its tests state.
``"reference"``
    The field's library called directly (dipy, astropy, sep, reproject), for
    bit-for-bit reproduction of it.

Implementations are found by name and then by the type of the input array
(:class:`Kernel`), so implementations for other array types (CuPy) can be
registered behind the same functions.

Examples
--------
>>> import numpy as np
>>> from sciimg import kernels
>>> sorted(kernels.kernels()["nlmeans"].implementations())
['fast', 'reference']
>>> kernels.mean_b0(np.ones((2, 2, 2, 3))).shape
(2, 2, 2)
"""

from sciimg.kernels._astro import (
    calibrate_ccd,
    clipped_mean,
    coadd_stack,
    detect_sources,
    warp,
)
from sciimg.kernels._dispatch import (
    IMPLEMENTATIONS,
    Implementation,
    Kernel,
    check_implementation,
    kernel,
    kernels,
    on_host,
)
from sciimg.kernels._neuro import (
    derive_tensor_map,
    estimate_sigma,
    fit_tensor,
    mean_b0,
    median_otsu,
    nlmeans,
    tensor_design_rank,
)
from sciimg.kernels._xp import namespace, ndimage

# CuPy blocks: the GPU implementations register when the first one is seen.
for _kernel in kernels().values():
    _kernel.register_lazy("cupy", "sciimg.kernels._cupy")
del _kernel

__all__ = [
    "IMPLEMENTATIONS",
    "Implementation",
    "Kernel",
    "calibrate_ccd",
    "check_implementation",
    "clipped_mean",
    "coadd_stack",
    "derive_tensor_map",
    "detect_sources",
    "estimate_sigma",
    "fit_tensor",
    "kernel",
    "kernels",
    "mean_b0",
    "median_otsu",
    "namespace",
    "ndimage",
    "nlmeans",
    "on_host",
    "tensor_design_rank",
    "warp",
]
