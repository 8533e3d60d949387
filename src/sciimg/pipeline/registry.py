"""Pipelines as descriptors, found by name: sciimg's own and other packages'.

A :class:`Pipeline` says what a pipeline is made of — the results it offers its
steps, its kinds of items and how each is found, fingerprinted, built into a
Dask computation and finished — and the engine (`sciimg.pipeline.engine`) runs
any of them the same way: resume, failures that stay with their item, Ctrl-C,
``run.json``. The engine never names a pipeline; the config, the CLI and the
benchmarks ask this registry.

A package adds a pipeline without touching sciimg through the entry point group
``sciimg.pipelines``, each entry naming a :class:`Pipeline` object::

    [project.entry-points."sciimg.pipelines"]
    spectra = "mylab.spectra:PIPELINE"

(xarray finds its backends the same way, with its own listed first.)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sciimg.errors import ConfigError

__all__ = [
    "Item",
    "Pipeline",
    "Stage",
    "get_pipeline",
    "pipeline_names",
]

#: The entry point group other packages register their pipelines in.
ENTRY_POINT_GROUP = "sciimg.pipelines"

#: sciimg's own pipelines, listed first (and found even where the package's
#: entry points are not installed, as in a source checkout).
_BUILTIN = {
    "neuro": "sciimg.pipeline.neuro_pipeline:PIPELINE",
    "astro": "sciimg.pipeline.astro_pipeline:PIPELINE",
    "images": "sciimg.pipeline.images_pipeline:PIPELINE",
}


@dataclass(frozen=True)
class Item:
    """One unit of work of a stage: a subject, an exposure, a sky patch."""

    id: str
    kind: str
    payload: Any = None


@dataclass(frozen=True)
class Stage:
    """One kind of item: how items are found, checked for being current, built.

    Every hook takes the run (`sciimg.pipeline.engine.Run`) first.

    Attributes
    ----------
    kind : str
        The items' kind (``subject``, ``exposure``, ``patch``), as ``run.json``
        and the records name it.
    items : callable
        ``(run) -> list[Item]``: the items, found once the previous stages are
        computed. The first stage's are found before the output folder is
        touched, by the pipeline's ``discover``.
    fingerprint : callable
        ``(run, item) -> str``: changes whenever the item's results would.
    build : callable
        ``(run, item, fingerprint) -> Job``: the item's computation.
    required : callable, optional
        ``(run, item) -> list[str]``: of the outputs the item's record lists,
        those that must exist for it to count as complete (default: all).
    skipped : callable, optional
        ``(run, item, record) -> ItemResult``: an item found complete and
        current (default: ``skipped``, with its store and timings).
    store : callable, optional
        ``(item) -> str``: the item's store, relative to the output folder.
    outdated : callable, optional
        ``(run, item)``: removes what the item's older outputs left that its
        new store does not replace.
    done : callable, optional
        ``(run)``: after the stage's items are computed (or the run stops).
    describe : callable, optional
        ``(cfg, item) -> dict``: the item's metadata, read from headers without
        reading pixels: the columns of ``manifest.parquet`` and the names
        ``input.where`` selects the first stage's items by. A ``files`` key
        lists the item's input files.
    """

    kind: str
    fingerprint: Callable[..., str]
    build: Callable[..., Any]
    items: Callable[..., list[Item]] | None = None
    required: Callable[..., list[str] | None] | None = None
    skipped: Callable[..., Any] | None = None
    store: Callable[[Item], str] | None = None
    outdated: Callable[..., None] | None = None
    done: Callable[..., None] | None = None
    describe: Callable[..., dict[str, Any]] | None = None


@dataclass(frozen=True)
class Pipeline:
    """A pipeline, as the engine, the config and the CLI see it.

    Attributes
    ----------
    name : str
        The config's ``pipeline:`` value.
    discover : callable
        ``(cfg, errors) -> list[Item]``: the first stage's items under
        ``input.path``; items that cannot even be listed go in ``errors`` (id →
        exception) and fail alone.
    stages : sequence of Stage
        In the order they run; a stage's items may depend on the results of
        the stages before it (a barrier between them).
    inputs : tuple of str
        What the pipeline offers its steps before any step runs; empty for a
        pipeline whose steps are fixed (all of them, in their order).
    default_steps : tuple of str, optional
        The built-in steps a config without ``steps:`` runs (default: all).
    start, finish : callable, optional
        ``(run)`` once the output folder is held; ``(run, complete)`` at the end
        (``complete`` is false after Ctrl-C), before ``run.json`` is written.
    description : str
        One line for ``sciimg --help`` and the docs.
    bench : str, optional
        ``"module:attribute"`` of the pipeline's :class:`sciimg.bench.Suite`,
        for ``sciimg bench``; None if it has none.
    worker_modules : tuple of str
        What the pipeline's tasks import on the workers, imported once for all
        the worker processes of a local cluster (see
        `sciimg.pipeline.worker_start`). Each must import without starting a
        thread: the workers are forks of the process that imported them.
    """

    name: str
    discover: Callable[..., list[Item]]
    stages: Sequence[Stage]
    inputs: tuple[str, ...] = ()
    default_steps: tuple[str, ...] | None = None
    start: Callable[..., None] | None = None
    finish: Callable[..., None] | None = None
    description: str = ""
    bench: str | None = None
    worker_modules: tuple[str, ...] = ()

    @property
    def fixed_steps(self) -> bool:
        """Whether the steps are always all the built-in ones, in their order."""
        return not self.inputs


_LOADED: dict[str, Pipeline] = {}


def _entry_points() -> dict[str, str]:
    from importlib.metadata import entry_points

    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _specs() -> dict[str, str]:
    return {**_entry_points(), **_BUILTIN}


def pipeline_names() -> list[str]:
    """Every pipeline's name: sciimg's own first, then those of other packages.

    Examples
    --------
    >>> pipeline_names()[:2]
    ['neuro', 'astro']
    """
    return [*_BUILTIN, *sorted(set(_entry_points()) - set(_BUILTIN))]


def get_pipeline(name: str) -> Pipeline:
    """The pipeline called ``name``, loaded on first use.

    Raises
    ------
    ConfigError
        No pipeline has that name, or its entry point does not load.

    Examples
    --------
    >>> get_pipeline("neuro").stages[0].kind
    'subject'
    """
    if name in _LOADED:
        return _LOADED[name]
    spec = _specs().get(name)
    if spec is None:
        names = " or ".join(repr(n) for n in pipeline_names())
        raise ConfigError(f"no pipeline {name!r} (pipelines: {names})")
    module, _, attr = spec.partition(":")
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        msg = f"pipeline {name!r}: cannot load {spec} ({exc})"
        raise ConfigError(msg) from exc
    if not isinstance(obj, Pipeline) or obj.name != name:
        msg = f"pipeline {name!r}: {spec} is not a sciimg Pipeline named {name!r}"
        raise ConfigError(msg)
    _LOADED[name] = obj
    return obj
