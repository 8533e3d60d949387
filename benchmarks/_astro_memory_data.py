"""The surveys and pipeline configs of the astronomy memory sweep
(``astro_memory.py``): each survey is generated once and reused."""

from __future__ import annotations

import json
from pathlib import Path

SEED = 0


def ensure_survey(root: Path, visits: int, ccds: int, shape: tuple[int, int]) -> Path:
    """The survey of ``visits`` visits under ``root``, generated once."""
    from sciimg.synth import write_astro_survey

    path = root / f"visits-{visits}"
    marker = root / f"visits-{visits}.json"
    params = {"visits": visits, "ccds": ccds, "ccd_shape": list(shape), "seed": SEED}
    have = sorted(path.glob("visit-*/ccd-*.fits")) if path.is_dir() else []
    if (
        marker.exists()
        and json.loads(marker.read_text()) == params
        and len(have) == visits * ccds
    ):
        return path
    root.mkdir(parents=True, exist_ok=True)
    write_astro_survey(
        path, visits=visits, ccds=ccds, ccd_shape=shape, seed=SEED, overwrite=True
    )
    marker.write_text(json.dumps(params) + "\n")
    return path


def write_config(
    path: Path, data: Path, output: Path, workers: int, block: int | None = None
) -> Path:
    """A config like ``pipelines/astro/demo.yaml``, for this survey."""
    import yaml

    coadd = {"nsigma": 3.0, "iterations": 2}
    if block:
        coadd["block"] = block
    cfg = {
        "pipeline": "astro",
        "input": {"path": str(data)},
        "output": str(output),
        "steps": {
            "calibrate": {},
            "skymap": {"patch_size": 300, "border": 30},
            "coadd": coadd,
            "detect": {"threshold": 5.0},
        },
        "cluster": {
            "n_workers": workers,
            "threads_per_worker": 1,
            "dashboard_address": ":0",
            "memory_limit": "4GB",
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path
