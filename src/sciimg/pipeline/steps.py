"""The step registry: built-in and user steps, called the same way.

A step is a function. Its parameters named after earlier results (``dwi``,
``gtab``, ``mask``, ...) receive those results; its other parameters come from the
step's section of the config. It returns a dict of arrays (or one array, named
after the step). Built-in steps register here with a pydantic model of their
parameters; a user's step is named in the config as ``module:function``.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from sciimg.errors import ConfigError

__all__ = [
    "Step",
    "builtin_steps",
    "load_function",
    "register_step",
    "resolve_arguments",
]


@dataclass(frozen=True)
class Step:
    """A registered step.

    Attributes
    ----------
    name : str
        Key of the step in a config's ``steps`` section.
    func : callable
        The function run to build the step's part of the graph.
    outputs : tuple of str
        Names of the results it returns.
    params : pydantic model class, optional
        Its parameters, validated and defaulted from the config.
    dims : dict
        Axis names of outputs that are not plain ``x, y, z[, volume]`` images.
    """

    name: str
    func: Callable[..., Any]
    outputs: tuple[str, ...]
    params: type[BaseModel] | None = None
    dims: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


_REGISTRY: dict[str, dict[str, Step]] = {}


def register_step(
    name: str,
    *,
    pipeline: str,
    outputs: tuple[str, ...] | None = None,
    params: type[BaseModel] | None = None,
    dims: Mapping[str, tuple[str, ...]] | None = None,
):
    """Register ``func`` as built-in step ``name`` of ``pipeline`` (a decorator).

    Examples
    --------
    >>> @register_step("double", pipeline="example")
    ... def double(dwi):
    ...     return 2 * dwi
    >>> builtin_steps("example")["double"].outputs
    ('double',)
    """

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        _REGISTRY.setdefault(pipeline, {})[name] = Step(
            name, func, tuple(outputs or (name,)), params, dict(dims or {})
        )
        return func

    return decorate


def builtin_steps(pipeline: str) -> dict[str, Step]:
    """The built-in steps of a pipeline, in their natural order."""
    return dict(_REGISTRY.get(pipeline, {}))


def load_function(spec: str) -> Callable[..., Any]:
    """Import ``"package.module:function"``.

    Examples
    --------
    >>> load_function("numpy:sqrt").__name__
    'sqrt'
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        msg = f"{spec!r} is not of the form 'module:function'"
        raise ConfigError(msg)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        msg = f"cannot import module {module_name!r} ({exc})"
        raise ConfigError(msg) from exc
    func = module
    for part in attr.split("."):
        func = getattr(func, part, None)
        if func is None:
            msg = f"module {module_name!r} has no {attr!r}"
            raise ConfigError(msg)
    if not callable(func):
        msg = f"{spec!r} is not callable"
        raise ConfigError(msg)
    return func


def resolve_arguments(
    step: Step,
    available: Mapping[str, Any] | set[str],
    params: Mapping[str, Any],
    inputs: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Match a step function's parameters to results and config values.

    With ``available`` a set of names, only checks (at config time) and returns the
    names each parameter will take; with a mapping, returns the arguments.

    Raises
    ------
    ConfigError
        A parameter that is neither a result nor configured nor defaulted, or a
        configured value the function does not take.
    """
    inputs = dict(inputs or {})
    signature = inspect.signature(step.func)
    names = set(signature.parameters)
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    unknown = [k for k in (*params, *inputs) if k not in names and not takes_kwargs]
    if unknown:
        msg = f"takes no parameter {unknown[0]!r} (it takes {', '.join(names)})"
        raise ConfigError(msg)
    args: dict[str, Any] = {}
    for pname, p in signature.parameters.items():
        if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        source = inputs.get(pname, pname)
        if pname in params:
            args[pname] = params[pname]
        elif source in available:
            args[pname] = (
                available[source] if isinstance(available, Mapping) else source
            )
        elif p.default is p.empty:
            have = ", ".join(sorted(available))
            msg = (
                f"needs {source!r}, which is neither configured nor made by any "
                f"step (available: {have})"
            )
            raise ConfigError(msg)
    for k, v in params.items():  # passed through **kwargs
        args.setdefault(k, v)
    return args
