"""Benchmark workloads: synthetic datasets at fixed seeds, generated once.

A workload is one pipeline at one size with a number of subjects (neuro) or
visits (astro). Its data come from :mod:`sciimg.synth` and are cached under
``CACHE/<pipeline>-<size>-<n>``; a marker file records the parameters, so a
cache made with other parameters is made again.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SEED = 0

#: The engines ``sciimg bench`` can compare.
ENGINES = ("dask", "spark", "relational", "serial")

#: Synthetic data per size. Neuro: phantom volume shape and directions per
#: shell (three shells, b0 every 8); ``hcp``: the HCP's 145×174×145 with 287
#: volumes. Astro: CCDs per visit and CCD shape.
SIZES: dict[str, dict[str, dict[str, Any]]] = {
    "neuro": {
        "tiny": {"shape": (16, 16, 10), "directions": 6},
        "small": {"shape": (32, 32, 20), "directions": 10},
        "medium": {"shape": (64, 64, 40), "directions": 20},
        "hcp": {"hcp": True},
    },
    "astro": {
        # Small CCDs need a denser sky to hold enough stars to measure the PSF.
        "tiny": {"ccds": 2, "ccd_shape": (160, 160), "density": 30.0},
        "small": {"ccds": 4, "ccd_shape": (256, 256)},
        "medium": {"ccds": 4, "ccd_shape": (512, 512)},
    },
}

#: Step parameters, shared by every engine. The neuro phantom's head is about a
#: quarter of an HCP head across, so the median filter is scaled down with it
#: (as in ``pipelines/neuro/demo.yaml``); astro patches are scaled to the CCDs.
STEPS: dict[str, dict[str, dict[str, Any]]] = {
    "neuro": {
        "mask": {"median_radius": 2, "numpass": 2, "dilate": 1},
        "denoise": {"method": "classic", "patch_radius": 1, "block_radius": 5},
        "dti": {"fit_method": "WLS"},
    },
    "astro": {
        "skymap": {"border": 30},
        "detect": {"qc": False},
    },
}


@dataclass(frozen=True)
class Workload:
    """One pipeline, size and number of subjects/visits, with its data."""

    pipeline: str
    size: str
    count: int
    data: Path

    @property
    def label(self) -> str:
        unit = "subjects" if self.pipeline == "neuro" else "visits"
        return f"{self.pipeline} {self.size}, {self.count} {unit}"

    def config(self, output: Path, workers: int = 1) -> dict[str, Any]:
        """The pipeline config of this workload (as ``sciimg run`` takes it)."""
        steps = {k: dict(v) for k, v in STEPS[self.pipeline].items()}
        if self.pipeline == "astro":
            side = SIZES["astro"][self.size]["ccd_shape"][0]
            steps["skymap"]["patch_size"] = max(100, int(side * 1.2))
        return {
            "pipeline": self.pipeline,
            "input": {"path": str(self.data)},
            "output": str(output),
            "steps": steps,
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


def check_workload(pipeline: str, size: str | None = None) -> None:
    """A one-line ``ValueError`` for an unknown pipeline or size."""
    if pipeline not in SIZES:
        msg = f"unknown pipeline {pipeline!r}; use neuro or astro"
        raise ValueError(msg)
    if size is not None and size not in SIZES[pipeline]:
        msg = f"no size {size!r} for {pipeline}; use {', '.join(SIZES[pipeline])}"
        raise ValueError(msg)


def ensure_workload(cache: Path, pipeline: str, size: str, count: int) -> Workload:
    """The workload's data under ``cache``, generated on first use."""
    check_workload(pipeline, size)
    params = {"size": size, "count": count, "seed": SEED, **SIZES[pipeline][size]}
    path = Path(cache) / f"{pipeline}-{size}-{count}"
    marker = path.with_suffix(".json")
    wanted = json.loads(json.dumps(params))
    have = json.loads(marker.read_text()) if marker.exists() else None
    if not (path.is_dir() and have == wanted):
        shutil.rmtree(path, ignore_errors=True)
        _generate(pipeline, path, count, SIZES[pipeline][size])
        marker.write_text(json.dumps(wanted))
    return Workload(pipeline, size, count, path)


def _generate(pipeline: str, path: Path, count: int, spec: dict[str, Any]) -> None:
    if pipeline == "neuro":
        from sciimg.synth import write_neuro_dataset

        if spec.get("hcp"):
            write_neuro_dataset(path, subjects=count, seed=SEED, hcp=True)
        else:
            write_neuro_dataset(
                path,
                subjects=count,
                shape=spec["shape"],
                directions=spec["directions"],
                seed=SEED,
            )
    else:
        from sciimg.synth import write_astro_survey

        write_astro_survey(
            path,
            visits=count,
            ccds=spec["ccds"],
            ccd_shape=spec["ccd_shape"],
            density=spec.get("density", 10.0),
            seed=SEED,
            overwrite=True,
        )
