"""The astronomy pipeline's benchmark: synthetic survey visits, four engines."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sciimg.bench._compare import compare_astro
from sciimg.bench._suite import Suite

#: CCDs per visit and CCD shape. Small CCDs need a denser sky to hold enough
#: stars to measure the PSF.
SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"ccds": 2, "ccd_shape": (160, 160), "density": 30.0},
    "small": {"ccds": 4, "ccd_shape": (256, 256)},
    "medium": {"ccds": 4, "ccd_shape": (512, 512)},
}


def _generate(path: Path, count: int, spec: Mapping[str, Any], seed: int) -> None:
    from sciimg.synth import write_astro_survey

    write_astro_survey(
        path,
        visits=count,
        ccds=spec["ccds"],
        ccd_shape=spec["ccd_shape"],
        density=spec.get("density", 10.0),
        seed=seed,
        overwrite=True,
    )


def _steps(spec: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Patches scaled to the CCDs; no QC pictures (they are not timed work)."""
    side = spec["ccd_shape"][0]
    return {
        "skymap": {"border": 30, "patch_size": max(100, int(side * 1.2))},
        "detect": {"qc": False},
    }


SUITE = Suite(
    pipeline="astro",
    unit="visits",
    default_count=2,
    sizes=SIZES,
    timed_steps=("ingest", "calibrate", "warp", "coadd", "detect"),
    engines={
        "dask": "sciimg.bench._dask:run_astro",
        "spark": "sciimg.bench._spark_astro:run_astro",
        "relational": "sciimg.bench._relational_astro:run_astro",
        "serial": "sciimg.bench._serial:run_astro",
    },
    generate=_generate,
    step_params=_steps,
    compare=compare_astro,
)
