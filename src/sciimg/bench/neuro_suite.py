"""The neuroscience pipeline's benchmark: phantom subjects, four engines."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sciimg.bench._compare import compare_neuro
from sciimg.bench._suite import Suite

#: Phantom volume shape and directions per shell (three shells, b0 every 8);
#: ``hcp``: the HCP's 145×174×145 with 287 volumes.
SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"shape": (16, 16, 10), "directions": 6},
    "small": {"shape": (32, 32, 20), "directions": 10},
    "medium": {"shape": (64, 64, 40), "directions": 20},
    "hcp": {"hcp": True},
}

#: Step parameters, shared by every engine. The phantom's head is about a
#: quarter of an HCP head across, so the median filter is scaled down with it
#: (as in ``pipelines/neuro/demo.yaml``).
STEPS: dict[str, dict[str, Any]] = {
    "mask": {"median_radius": 2, "numpass": 2, "dilate": 1},
    "denoise": {"method": "classic", "patch_radius": 1, "block_radius": 5},
    "dti": {"fit_method": "WLS"},
}


def _generate(path: Path, count: int, spec: Mapping[str, Any], seed: int) -> None:
    from sciimg.synth import write_neuro_dataset

    if spec.get("hcp"):
        write_neuro_dataset(path, subjects=count, seed=seed, hcp=True)
        return
    write_neuro_dataset(
        path,
        subjects=count,
        shape=spec["shape"],
        directions=spec["directions"],
        seed=seed,
    )


def _steps(spec: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: dict(params) for name, params in STEPS.items()}


SUITE = Suite(
    pipeline="neuro",
    unit="subjects",
    default_count=1,
    sizes=SIZES,
    timed_steps=("ingest", "mask", "denoise", "dti"),
    engines={
        "dask": "sciimg.bench._dask:run_neuro",
        "spark": "sciimg.bench._spark:run_neuro",
        "relational": "sciimg.bench._relational:run_neuro",
        "serial": "sciimg.bench._serial:run_neuro",
    },
    generate=_generate,
    step_params=_steps,
    compare=compare_neuro,
)
