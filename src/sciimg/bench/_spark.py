"""The Spark engine: PySpark RDDs with the plans of Mehta et al. (PVLDB 2017).

Every step is a stage over an RDD that is persisted and counted inside its
:meth:`StepClock.step`, so that steps are separated by barriers as in the paper,
and what a step no longer needs is unpersisted. The per-step work is the
kernels of :mod:`sciimg.bench._kernels`, the same the serial engine calls.

Neuro (``ingest``, ``mask``, ``denoise``, ``dti``): the subjects are
parallelised, one task each, and read; their b-values and b-vectors are
collected to the driver and their volumes flat-mapped to ``(subject, volume
index, volume)`` records, spread evenly over the partitions. ``mask`` filters
the b0 volumes, groups them by subject, averages them and computes the brain
mask; the masks are collected and broadcast. ``denoise`` maps every volume
through non-local means. ``dti`` cuts every denoised volume into the blocks of
:data:`sciimg.bench._serial.FIT_BLOCK` voxels, groups the blocks by ``(subject,
block)``, stacks them in volume order and fits the tensor; the FA blocks are
collected and assembled per subject on the driver.

Astro (``ingest``, ``calibrate``, ``warp``, ``coadd``, ``detect``): the
exposures are parallelised and read, then calibrated. ``warp`` collects each
calibrated exposure's WCS, shape, PSF and mask bits, builds the sky map, the
patch membership and the target PSF per patch on the driver, broadcasts them and
flat-maps every exposure to its warps, keyed by patch. ``coadd`` groups the
warps by patch and co-adds them in exposure order; ``detect`` finds the sources
of every coadd, and the coadds and catalogs are collected and written.
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sciimg.bench import _kernels as k
from sciimg.bench._outputs import StepClock, save_neuro
from sciimg.bench._serial import FIT_BLOCK
from sciimg.bench._workloads import Workload

if TYPE_CHECKING:
    from pyspark import SparkContext
    from pyspark.broadcast import Broadcast

#: Memory of the driver JVM (which, in local mode, also runs the executors).
DRIVER_MEMORY = "2g"

#: Partitions per worker of the volume RDD, for balance in ``denoise``.
PARTITIONS_PER_WORKER = 4


#: log4j2 configuration of the driver JVM: errors only, so that a run's output is
#: not drowned in Spark's start-up notices.
_LOG4J2 = """\
rootLogger.level = error
rootLogger.appenderRef.console.ref = console
logger.gateway.name = org.apache.spark.api.python.PythonGatewayServer
logger.gateway.level = error
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex
"""


@contextmanager
def _environ(**values: str) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def spark_context(workers: int = 1, master: str | None = None) -> Iterator[Any]:
    """A SparkContext for one run, stopped on exit.

    Parameters
    ----------
    workers : int
        Cores of the local master ``local[workers]``, when ``master`` is None.
    master : str, optional
        A Spark master URL, instead of the local one.

    Yields
    ------
    pyspark.SparkContext
        The context of a fresh SparkSession whose Python workers run
        :data:`sys.executable`.
    """
    from pyspark.sql import SparkSession

    master = master or f"local[{workers}]"
    env = {"PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    if master.startswith("local") and "SPARK_LOCAL_IP" not in os.environ:
        env["SPARK_LOCAL_IP"] = "127.0.0.1"  # no warning about a loopback hostname
    spark = None
    with tempfile.TemporaryDirectory() as tmp, _environ(**env):
        log4j = Path(tmp) / "log4j2.properties"
        log4j.write_text(_LOG4J2)
        try:
            builder = (
                SparkSession.builder.master(master)
                .appName("sciimg-bench")
                .config("spark.python.worker.reuse", "true")
                .config("spark.ui.enabled", "false")
                .config("spark.ui.showConsoleProgress", "false")
                .config("spark.driver.memory", DRIVER_MEMORY)
                .config(
                    "spark.driver.extraJavaOptions",
                    f"-Dlog4j2.configurationFile={log4j.as_uri()}",
                )
            )
            with warnings.catch_warnings():
                # PySpark 4 warns on import that it does not support pandas 3 fully.
                warnings.filterwarnings(
                    "ignore", "PySpark does not yet fully support", FutureWarning
                )
                spark = builder.getOrCreate()
            spark.sparkContext.setLogLevel("ERROR")
            yield spark.sparkContext
        finally:
            if spark is not None:
                spark.stop()


def _engine(sc: SparkContext) -> dict[str, str]:
    import pyspark

    return {"master": sc.master, "spark": pyspark.__version__}


def _persist(rdd):
    from pyspark import StorageLevel

    return rdd.persist(StorageLevel.MEMORY_AND_DISK)


# ----------------------------------------------------------------- neuroscience


def _read_subject(subject) -> tuple[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    return subject.id, k.read_subject(subject.dwi, subject.bval, subject.bvec)


def _gradients(record) -> tuple[str, tuple[np.ndarray, np.ndarray]]:
    sid, (_, bvals, bvecs) = record
    return sid, (bvals, bvecs)


def _split_volumes(record, offsets: Broadcast) -> Iterator[tuple[int, tuple]]:
    sid, (data, _, _) = record
    first = offsets.value[sid]
    for v in range(data.shape[3]):
        yield first + v, (sid, v, np.ascontiguousarray(data[..., v]))


def _identity(key: int) -> int:
    return key


def _is_b0(record, b0: Broadcast) -> bool:
    sid, v, _ = record
    return v in b0.value[sid]


def _by_subject(record) -> tuple[str, tuple[int, np.ndarray]]:
    sid, v, volume = record
    return sid, (v, volume)


def _mask_of(volumes, params: Mapping[str, Any]) -> np.ndarray:
    ordered = [volume for _, volume in sorted(volumes, key=lambda item: item[0])]
    return k.brain_mask(k.mean_b0(ordered), params)


def _denoise(record, masks: Broadcast, params: Mapping[str, Any]) -> tuple:
    sid, v, volume = record
    return sid, v, k.denoise_volume(volume, masks.value[sid], params)


def _cut_blocks(record) -> Iterator[tuple[tuple[str, int], tuple[int, np.ndarray]]]:
    sid, v, volume = record
    for b, box in enumerate(k.voxel_blocks(volume.shape, FIT_BLOCK)):
        yield (sid, b), (v, np.ascontiguousarray(volume[box]))


def _fit_block(
    item, masks: Broadcast, gradients: Broadcast, params: Mapping[str, Any]
) -> tuple[tuple[str, int], np.ndarray]:
    (sid, b), blocks = item
    mask = masks.value[sid]
    box = k.voxel_blocks(mask.shape, FIT_BLOCK)[b]
    ordered = [block for _, block in sorted(blocks, key=lambda item: item[0])]
    bvals, bvecs = gradients.value[sid]
    return (sid, b), k.fit_fa(
        np.stack(ordered, axis=-1), mask[box], bvals, bvecs, params
    )


def run_neuro(
    workload: Workload,
    out: Path,
    params: dict[str, Any],
    *,
    workers: int = 1,
    master: str | None = None,
) -> dict:
    """Run the neuro pipeline (mask, denoise, DTI FA) on Spark RDDs.

    Parameters
    ----------
    workload : Workload
        The subjects to process.
    out : Path
        Where ``<subject>/mask.npy`` and ``fa.npy`` are written.
    params : dict
        Step parameters, as :meth:`Workload.step_params` gives them.
    workers : int
        Cores of the local master, when ``master`` is None.
    master : str, optional
        A Spark master URL instead of ``local[workers]``.

    Returns
    -------
    dict
        ``steps``: seconds per step; ``engine``: the master and Spark version.
    """
    from sciimg.io import discover_subjects

    subjects = discover_subjects(workload.data)
    clock = StepClock()
    with spark_context(workers, master) as sc:
        with clock.step("ingest"):
            raw = _persist(sc.parallelize(subjects, len(subjects)).map(_read_subject))
            gradients = dict(raw.map(_gradients).collect())
            offsets, total = {}, 0
            for subject in subjects:
                offsets[subject.id] = total
                total += len(gradients[subject.id][0])
            parts = max(1, min(total, PARTITIONS_PER_WORKER * sc.defaultParallelism))
            volumes = _persist(
                raw.flatMap(partial(_split_volumes, offsets=sc.broadcast(offsets)))
                .partitionBy(parts, _identity)
                .values()
            )
            volumes.count()
            raw.unpersist()
            grads = sc.broadcast(gradients)
        with clock.step("mask"):
            b0 = {
                sid: {
                    int(i) for i in k.b0_volumes(bvals, params["mask"]["b0_threshold"])
                }
                for sid, (bvals, _) in gradients.items()
            }
            masks = dict(
                volumes.filter(partial(_is_b0, b0=sc.broadcast(b0)))
                .map(_by_subject)
                .groupByKey()
                .mapValues(partial(_mask_of, params=params["mask"]))
                .collect()
            )
            masks_b = sc.broadcast(masks)
        with clock.step("denoise"):
            denoised = _persist(
                volumes.map(partial(_denoise, masks=masks_b, params=params["denoise"]))
            )
            denoised.count()
            volumes.unpersist()
        with clock.step("dti"):
            fits = (
                denoised.flatMap(_cut_blocks)
                .groupByKey()
                .map(
                    partial(
                        _fit_block, masks=masks_b, gradients=grads, params=params["dti"]
                    )
                )
                .collect()
            )
            denoised.unpersist()
            fa = {sid: np.zeros(mask.shape, np.float32) for sid, mask in masks.items()}
            for (sid, b), block in fits:
                fa[sid][k.voxel_blocks(fa[sid].shape, FIT_BLOCK)[b]] = block
        for subject in subjects:
            save_neuro(out, subject.id, masks[subject.id], fa[subject.id])
        engine = _engine(sc)
    return {"steps": clock.as_dict(), "engine": engine}
