"""Where chunks are computed: on the CPU as NumPy arrays, or on a GPU as CuPy ones.

A run's ``device:`` key (``sciimg run --device``) says which. With ``gpu`` the
arrays read from disk move to the GPU once (`to_device`), every kernel of
`sciimg.kernels` dispatches on the block's array type, and results come back to
the host only to be written (`to_host`). `gpu_problem` says, in one line, why a
GPU cannot be used here: the error ``device: gpu`` gives at config time.

Examples
--------
>>> import dask.array as da
>>> x = da.ones((4, 4), chunks=2)
>>> to_device(x, "cpu") is x
True
>>> check_device("tpu")
Traceback (most recent call last):
...
sciimg.errors.ConfigError: device: must be cpu or gpu, not 'tpu'
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from sciimg.errors import ConfigError

__all__ = [
    "DEVICES",
    "Device",
    "check_device",
    "gpu_count",
    "gpu_problem",
    "is_gpu_array",
    "to_device",
    "to_host",
]

Device = Literal["cpu", "gpu"]
#: The devices a run may ask for, the default first.
DEVICES: tuple[str, ...] = ("cpu", "gpu")

#: cudaErrorNoDevice: a driver, but no device it may use.
_NO_DEVICE = 100


def _cuda_version(code: int) -> str:
    return f"{code // 1000}.{code % 1000 // 10}"


def gpu_problem() -> str | None:
    """Why CuPy cannot compute here, in a few words; None when it can.

    Examples
    --------
    >>> problem = gpu_problem()
    >>> problem is None or isinstance(problem, str)
    True
    """
    try:
        import cupy
    except ImportError:
        return "CuPy is not installed (pip install 'sciimg[gpu]')"
    except Exception as exc:  # a broken install: say what CuPy said
        return f"CuPy does not import ({type(exc).__name__}: {exc})"
    runtime = cupy.cuda.runtime
    try:
        driver = runtime.driverGetVersion()
    except Exception:
        driver = 0
    if driver == 0:
        return "no NVIDIA driver on this machine (no CUDA device)"
    needed = runtime.runtimeGetVersion()
    if driver < needed:
        return (
            f"the NVIDIA driver supports CUDA {_cuda_version(driver)}, older than "
            f"the CUDA {_cuda_version(needed)} CuPy was built for: update the driver "
            "or install the CuPy wheel for that CUDA"
        )
    try:
        count = runtime.getDeviceCount()
    except runtime.CUDARuntimeError as exc:
        if getattr(exc, "status", None) != _NO_DEVICE:
            return f"CUDA cannot list the devices ({exc})"
        count = 0
    if count == 0:
        return "no CUDA device is visible (see CUDA_VISIBLE_DEVICES)"
    return None


def gpu_count() -> int:
    """GPUs CuPy can use on this machine (0 where it cannot).

    Examples
    --------
    >>> gpu_count() >= 0
    True
    """
    if gpu_problem() is not None:
        return 0
    import cupy

    return int(cupy.cuda.runtime.getDeviceCount())


def check_device(device: str) -> str:
    """``device`` if this machine can compute on it, else a one-line ConfigError
    that names the key and what is missing.

    Examples
    --------
    >>> check_device("cpu")
    'cpu'
    """
    if device not in DEVICES:
        raise ConfigError(f"device: must be {' or '.join(DEVICES)}, not {device!r}")
    if device == "gpu":
        problem = gpu_problem()
        if problem is not None:
            raise ConfigError(f"device: gpu: {problem}")
    return device


def is_gpu_array(array: Any) -> bool:
    """Whether ``array`` (or a dask array's blocks) lives on a GPU.

    Examples
    --------
    >>> is_gpu_array(np.ones(2))
    False
    """
    meta = getattr(array, "_meta", array)
    return type(meta).__module__.partition(".")[0] == "cupy"


def to_device(array: Any, device: str) -> Any:
    """``array`` (a dask array) with its blocks on ``device``: unchanged for the
    CPU, each block copied to the GPU once for ``"gpu"``."""
    if device == "cpu":
        return array
    return array.map_blocks(_ascupy, dtype=array.dtype, meta=_meta(array))


def _meta(array: Any) -> Any:
    """An empty CuPy array for the graph's metadata (dask-image picks its
    filters by it), or NumPy's where the machine building the graph (a login
    node, a laptop driving a cluster) has no GPU to make one on."""
    empty = (0,) * array.ndim
    if gpu_problem() is None:
        import cupy

        return cupy.empty(empty, dtype=array.dtype)
    return np.empty(empty, dtype=array.dtype)


def _ascupy(block: Any) -> Any:
    import cupy

    return cupy.asarray(block)


def _asnumpy(block: Any) -> np.ndarray:
    return block.get() if hasattr(block, "get") else np.asarray(block)


def to_host(array: Any, device: str | None = None) -> Any:
    """``array`` (a dask array) with NumPy blocks, copied from the GPU if there.

    With ``device="gpu"`` every block is checked as it is computed, whatever
    the array's metadata says (a step of one's own may not keep it right).

    Examples
    --------
    >>> import dask.array as da
    >>> x = da.ones(3, chunks=2)
    >>> to_host(x) is x
    True
    """
    if device != "gpu" and not is_gpu_array(array):
        return array
    meta = np.empty((0,) * array.ndim, dtype=array.dtype)
    return array.map_blocks(_asnumpy, dtype=array.dtype, meta=meta)
