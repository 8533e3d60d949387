"""Synthetic data with ground truth, so pipelines can be checked without downloads."""

from sciimg.synth._gradients import multishell_gtab
from sciimg.synth._neuro import (
    LABELS,
    NeuroPhantom,
    make_neuro_phantom,
    write_neuro_dataset,
)

__all__ = [
    "LABELS",
    "NeuroPhantom",
    "make_neuro_phantom",
    "multishell_gtab",
    "write_neuro_dataset",
]
