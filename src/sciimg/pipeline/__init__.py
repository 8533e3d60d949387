"""Wiring steps into runs: the config schema, the step registry, the runner."""

from sciimg.pipeline import astro_steps, neuro_steps
from sciimg.pipeline.cluster import connect, open_client
from sciimg.pipeline.config import ClusterConfig, PipelineConfig, load_config
from sciimg.pipeline.runner import ItemResult, RunReport, run_pipeline
from sciimg.pipeline.steps import Step, builtin_steps, register_step
from sciimg.pipeline.strict import StrictModel

del astro_steps, neuro_steps  # imported for their registrations

__all__ = [
    "ClusterConfig",
    "ItemResult",
    "PipelineConfig",
    "RunReport",
    "Step",
    "StrictModel",
    "builtin_steps",
    "connect",
    "load_config",
    "open_client",
    "register_step",
    "run_pipeline",
]
