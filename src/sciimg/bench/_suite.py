"""What ``sciimg bench`` needs to know of a pipeline: a benchmark suite.

A pipeline that can be benchmarked names its suite in its descriptor
(``Pipeline.bench``, ``"module:attribute"``), so the harness, the report and the
CLI ask the pipeline registry rather than knowing pipelines by name.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Suite", "get_suite", "suite_names"]


@dataclass(frozen=True)
class Suite:
    """A pipeline's benchmark: its workloads, its engines and how to check them.

    Attributes
    ----------
    pipeline : str
        The pipeline's name, as in a config's ``pipeline:``.
    unit : str
        What a workload's count counts, plural (``"subjects"``, ``"visits"``):
        also the name of ``sciimg bench``'s option that sets the counts.
    default_count : int
        The count when none is given.
    sizes : mapping
        Size name → parameters of the synthetic data.
    timed_steps : tuple of str
        The steps whose times each engine reports, in order.
    engines : mapping
        Engine name → ``"module:function"`` of its run, called as
        ``run(workload, out, step_params, **options)`` in a fresh process.
    generate : callable
        ``(path, count, size_spec, seed)``: writes a workload's data.
    step_params : callable
        ``(size_spec) -> steps``: the config's ``steps:`` for a size, the same
        for every engine.
    compare : callable
        ``(reference, other) -> {"agree", "problems", ...}``: an engine's
        outputs against the serial run's.
    """

    pipeline: str
    unit: str
    default_count: int
    sizes: Mapping[str, Mapping[str, Any]]
    timed_steps: tuple[str, ...]
    engines: Mapping[str, str]
    generate: Callable[[Path, int, Mapping[str, Any], int], None]
    step_params: Callable[[Mapping[str, Any]], dict[str, dict[str, Any]]]
    compare: Callable[[Path, Path], dict[str, Any]]

    def engine(self, name: str) -> Callable[..., dict[str, Any]]:
        """The run function of engine ``name``."""
        module, _, attr = self.engines[name].partition(":")
        return getattr(importlib.import_module(module), attr)


def suite_names() -> list[str]:
    """The pipelines that have a benchmark suite.

    Examples
    --------
    >>> suite_names()
    ['neuro', 'astro']
    """
    from sciimg.pipeline.registry import get_pipeline, pipeline_names

    return [n for n in pipeline_names() if get_pipeline(n).bench]


def get_suite(pipeline: str) -> Suite:
    """The benchmark suite of ``pipeline``.

    Raises
    ------
    ValueError
        No such pipeline, or it has no benchmark suite (one line).

    Examples
    --------
    >>> get_suite("astro").unit
    'visits'
    """
    from sciimg.errors import ConfigError
    from sciimg.pipeline.registry import get_pipeline

    try:
        spec = get_pipeline(pipeline).bench
    except ConfigError as exc:
        raise ValueError(f"unknown pipeline {pipeline!r}; use {_choices()}") from exc
    if not spec:
        msg = f"the {pipeline} pipeline has no benchmark; use {_choices()}"
        raise ValueError(msg)
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


def _choices() -> str:
    return " or ".join(suite_names())
