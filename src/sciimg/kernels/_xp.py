"""The array namespace of a kernel's input: NumPy on the CPU, CuPy on a GPU.

The GPU kernels are written once against the namespace of their input, so the
same code runs under NumPy: that is how their algorithm is tested on machines
without a GPU (CuPy implements NumPy's and SciPy's interfaces where they are
used here).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

__all__ = ["namespace", "ndimage"]


def namespace(*arrays: Any) -> ModuleType:
    """``cupy`` if any of ``arrays`` is a CuPy array, else ``numpy``.

    Examples
    --------
    >>> namespace(np.ones(2)).__name__
    'numpy'
    """
    for a in arrays:
        if type(a).__module__.partition(".")[0] == "cupy":
            import cupy

            return cupy
    return np


def ndimage(xp: ModuleType) -> ModuleType:
    """SciPy's ``ndimage`` for NumPy, CuPy's twin of it for CuPy.

    Examples
    --------
    >>> ndimage(np).__name__
    'scipy.ndimage'
    """
    if xp is np:
        import scipy.ndimage

        return scipy.ndimage
    import cupyx.scipy.ndimage

    return cupyx.scipy.ndimage
