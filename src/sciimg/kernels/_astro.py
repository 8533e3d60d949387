"""The astronomy kernels: the sigma-clipped co-add of a stack of visits."""

from __future__ import annotations

from typing import Literal

import numpy as np

from sciimg.kernels._dispatch import kernel

__all__ = ["clipped_mean"]


def clipped_mean(
    values: np.ndarray,
    variances: np.ndarray,
    valid: np.ndarray | None = None,
    *,
    nsigma: float = 3.0,
    iterations: int = 2,
    clip: Literal["variance", "stack"] = "variance",
    implementation: str = "fast",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Inverse-variance weighted mean along axis 0 after iterative sigma clipping.

    See :func:`sciimg.astro.clipped_mean` for the algorithm; ``"reference"`` is
    that NumPy formulation, ``"fast"`` one pass per pixel in compiled code.

    Examples
    --------
    >>> x = np.array([[1.0], [1.2], [0.9], [50.0]])
    >>> m, v, n, c = clipped_mean(x, np.full_like(x, 0.04))
    >>> round(float(m[0]), 3), int(n[0]), bool(c[0])
    (1.033, 3, True)
    """
    return kernel("clipped_mean")(
        values,
        variances,
        valid,
        nsigma=nsigma,
        iterations=iterations,
        clip=clip,
        implementation=implementation,
    )


@kernel("clipped_mean").register("reference")
def _clipped_mean_numpy(values, variances, valid, **kwargs):
    from sciimg.astro import clipped_mean as _clipped_mean

    return _clipped_mean(values, variances, valid, **kwargs)


@kernel("clipped_mean").register("fast")
def _clipped_mean_numba(values, variances, valid, **kwargs):
    # Imported on first use: numba compiles (or loads from its cache) then.
    from sciimg.kernels._clip_fast import clipped_mean as _clipped_mean

    return _clipped_mean(values, variances, valid, **kwargs)
