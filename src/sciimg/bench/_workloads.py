"""Benchmark workloads: synthetic datasets at fixed seeds, generated once.

A workload is one pipeline at one size with a number of items (subjects,
visits: its suite's unit). Its data come from :mod:`sciimg.synth` and are
cached under ``CACHE/<pipeline>-<size>-<n>``; a marker file records the
parameters, so a cache made with other parameters is made again.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sciimg.bench._suite import Suite, get_suite

SEED = 0

#: The engines ``sciimg bench`` can compare.
ENGINES = ("dask", "spark", "relational", "serial")


@dataclass(frozen=True)
class Workload:
    """One pipeline, size and number of subjects/visits, with its data."""

    pipeline: str
    size: str
    count: int
    data: Path

    @property
    def suite(self) -> Suite:
        return get_suite(self.pipeline)

    @property
    def label(self) -> str:
        return f"{self.pipeline} {self.size}, {self.count} {self.suite.unit}"

    def config(self, output: Path, workers: int = 1) -> dict[str, Any]:
        """The pipeline config of this workload (as ``sciimg run`` takes it)."""
        suite = self.suite
        return {
            "pipeline": self.pipeline,
            "input": {"path": str(self.data)},
            "output": str(output),
            "steps": suite.step_params(suite.sizes[self.size]),
            "cluster": {
                "n_workers": workers,
                "threads_per_worker": 1,
                "dashboard_address": None,
            },
        }

    def step_params(self) -> dict[str, dict[str, Any]]:
        """Validated parameters of every step, defaults filled in."""
        from sciimg.pipeline import load_config

        cfg = load_config(self.config(Path("unused")))
        return {s.name: dict(s.params) for s in cfg.plan()}


def check_workload(pipeline: str, size: str | None = None) -> Suite:
    """The pipeline's benchmark suite; a one-line ``ValueError`` for an unknown
    pipeline or size.

    Examples
    --------
    >>> check_workload("neuro", "huge")
    Traceback (most recent call last):
    ...
    ValueError: no size 'huge' for neuro; use tiny, small, medium, hcp
    """
    suite = get_suite(pipeline)
    if size is not None and size not in suite.sizes:
        msg = f"no size {size!r} for {pipeline}; use {', '.join(suite.sizes)}"
        raise ValueError(msg)
    return suite


def ensure_workload(cache: Path, pipeline: str, size: str, count: int) -> Workload:
    """The workload's data under ``cache``, generated on first use."""
    suite = check_workload(pipeline, size)
    spec = suite.sizes[size]
    params = {"size": size, "count": count, "seed": SEED, **spec}
    path = Path(cache) / f"{pipeline}-{size}-{count}"
    marker = path.with_suffix(".json")
    wanted = json.loads(json.dumps(params))
    have = json.loads(marker.read_text()) if marker.exists() else None
    if not (path.is_dir() and have == wanted):
        shutil.rmtree(path, ignore_errors=True)
        suite.generate(path, count, spec, SEED)
        marker.write_text(json.dumps(wanted))
    return Workload(pipeline, size, count, path)
