"""One dispatch point per kernel: an implementation by name, then by array type.

Every kernel has a ``"reference"`` implementation (the field's library called
directly, for bit-for-bit reproduction of it) and a ``"fast"`` one (the
default), each registered for the array types it accepts. A call looks up the
implementation asked for and then the first class in the input array's method
resolution order that has one, so a CuPy implementation registered for
``cupy.ndarray`` is taken for CuPy blocks without the caller saying so. Modules
that need an optional package register lazily: they are imported the first time
an array of that package is seen, as dask-image's dispatchers do.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any, Literal

import numpy as np

__all__ = [
    "IMPLEMENTATIONS",
    "Implementation",
    "Kernel",
    "check_implementation",
    "kernel",
    "kernels",
    "on_host",
]

Implementation = Literal["fast", "reference"]

#: The implementations every kernel has, the default first.
IMPLEMENTATIONS: tuple[str, ...] = ("fast", "reference")

_KERNELS: dict[str, Kernel] = {}

#: Packages whose arrays a kernel without an implementation for them computes
#: on the host: the arguments are copied there, the results copied back.
HOST_FALLBACK = ("cupy",)


class Kernel:
    """A kernel's implementations, chosen by name and by the type of the array.

    Parameters
    ----------
    name : str
        The kernel's name (that of its public function).

    Examples
    --------
    >>> import numpy as np
    >>> double = Kernel("double")
    >>> @double.register("reference")
    ... def _(a):
    ...     return a + a
    >>> @double.register("fast")
    ... def _(a):
    ...     return 2 * a
    >>> double(np.arange(3)).tolist(), double(np.arange(3), implementation="reference")
    ([0, 2, 4], array([0, 2, 4]))
    >>> double(np.arange(3), implementation="gpu")
    Traceback (most recent call last):
    ...
    ValueError: kernel double has no implementation 'gpu' (it has: fast, reference)
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._impls: dict[str, dict[type, Callable[..., Any]]] = {}
        self._lazy: dict[str, str] = {}

    def register(
        self,
        implementation: str | Iterable[str],
        array_type: type | tuple[type, ...] = np.ndarray,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register a function as ``implementation`` for arrays of ``array_type``.

        ``implementation`` may name several (a kernel whose reference is already
        as fast as sciimg can make it registers it as both).
        """
        names = (implementation,) if isinstance(implementation, str) else implementation
        types = array_type if isinstance(array_type, tuple) else (array_type,)

        def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
            for name in names:
                for typ in types:
                    self._impls.setdefault(name, {})[typ] = func
            return func

        return decorate

    def register_lazy(self, package: str, module: str) -> None:
        """Import ``module`` (which registers more implementations) the first
        time an array from ``package`` (its top-level name) is dispatched."""
        self._lazy[package] = module

    def implementations(self) -> tuple[str, ...]:
        """Names of the registered implementations, the default first."""
        known = [name for name in IMPLEMENTATIONS if name in self._impls]
        return (*known, *(name for name in self._impls if name not in known))

    def resolve(self, array: Any, implementation: str = "fast") -> Callable[..., Any]:
        """The function that runs ``implementation`` for ``array``'s type."""
        by_type = self._impls.get(implementation)
        if by_type is None:
            have = ", ".join(self.implementations()) or "none"
            msg = (
                f"kernel {self.name} has no implementation {implementation!r} "
                f"(it has: {have})"
            )
            raise ValueError(msg)
        typ = type(array)
        package = typ.__module__.partition(".")[0]
        if package in self._lazy:
            importlib.import_module(self._lazy.pop(package))
        for cls in typ.__mro__:
            if cls in by_type:
                return by_type[cls]
        if package in HOST_FALLBACK and np.ndarray in by_type:
            return on_host(by_type[np.ndarray])
        msg = (
            f"kernel {self.name} ({implementation}) takes no {typ.__module__}."
            f"{typ.__qualname__}; it takes "
            + ", ".join(f"{t.__module__}.{t.__qualname__}" for t in by_type)
        )
        raise TypeError(msg)

    def __call__(
        self, array: Any, *args: Any, implementation: str = "fast", **kwargs: Any
    ) -> Any:
        return self.resolve(array, implementation)(array, *args, **kwargs)

    def __repr__(self) -> str:
        return f"Kernel({self.name!r}, implementations={self.implementations()})"


def _device_module(args) -> Any:
    for a in args:
        package = type(a).__module__.partition(".")[0]
        if package in HOST_FALLBACK:
            return importlib.import_module(package)
    return None


def _to_host(a: Any, xp: Any) -> Any:
    return a.get() if type(a).__module__.startswith(xp.__name__) else a


def _to_device(result: Any, xp: Any) -> Any:
    if isinstance(result, np.ndarray):
        return xp.asarray(result)
    if isinstance(result, tuple | list):
        return type(result)(_to_device(r, xp) for r in result)
    if isinstance(result, dict):
        return {k: _to_device(v, xp) for k, v in result.items()}
    return result  # a table, a number: the caller takes it as it is


def on_host(func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` (a NumPy implementation) for device arrays: their arguments
    copied to the host, NumPy results (also in tuples, lists and dicts) copied
    back to the device of the first device array.

    Examples
    --------
    >>> on_host(np.add)(np.ones(2), 1).tolist()  # NumPy in: nothing to copy
    [2.0, 2.0]
    """

    def run(*args: Any, **kwargs: Any) -> Any:
        xp = _device_module([*args, *kwargs.values()])
        if xp is None:
            return func(*args, **kwargs)
        host = [_to_host(a, xp) for a in args]
        named = {k: _to_host(v, xp) for k, v in kwargs.items()}
        return _to_device(func(*host, **named), xp)

    run.__wrapped__ = func
    return run


def kernel(name: str) -> Kernel:
    """The kernel of sciimg named ``name``, made and listed on first use."""
    if name not in _KERNELS:
        _KERNELS[name] = Kernel(name)
    return _KERNELS[name]


def kernels() -> dict[str, Kernel]:
    """Every kernel by name, with its implementations.

    Examples
    --------
    >>> import sciimg.kernels
    >>> sorted(kernels())[:3]
    ['calibrate_ccd', 'clipped_mean', 'detect_sources']
    """
    return dict(_KERNELS)


def check_implementation(implementation: str) -> str:
    """``implementation`` if it is one every kernel has, else a ValueError.

    Examples
    --------
    >>> check_implementation("reference")
    'reference'
    """
    if implementation not in IMPLEMENTATIONS:
        msg = (
            f"implementation must be one of {', '.join(IMPLEMENTATIONS)}, "
            f"got {implementation!r}"
        )
        raise ValueError(msg)
    return implementation
