"""Benchmarks: sciimg's Dask pipelines against Spark, relational and serial runs.

``sciimg bench neuro --size tiny`` runs each engine on the same synthetic
workload with the same per-step kernels, measures wall time, CPU time and peak
memory of each run's whole process tree, and checks every engine's outputs
against the serial run's. See ``docs/benchmarks.md``.
"""

from sciimg.bench._harness import run_bench
from sciimg.bench._suite import Suite, get_suite, suite_names
from sciimg.bench._workloads import (
    ENGINES,
    Workload,
    check_workload,
    ensure_workload,
)

__all__ = [
    "ENGINES",
    "Suite",
    "Workload",
    "check_workload",
    "ensure_workload",
    "get_suite",
    "run_bench",
    "suite_names",
]
