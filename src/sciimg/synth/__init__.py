"""Synthetic data with ground truth, so pipelines can be checked without downloads."""

from sciimg.synth._astro import AstroSurvey, write_astro_survey
from sciimg.synth._gradients import multishell_gtab
from sciimg.synth._neuro import (
    LABELS,
    NeuroPhantom,
    make_neuro_phantom,
    write_neuro_dataset,
)
from sciimg.synth._sky import make_sky_catalog, render_exposure

__all__ = [
    "LABELS",
    "AstroSurvey",
    "NeuroPhantom",
    "make_neuro_phantom",
    "make_sky_catalog",
    "multishell_gtab",
    "render_exposure",
    "write_astro_survey",
    "write_neuro_dataset",
]
