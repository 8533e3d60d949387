"""Running a pipeline over many subjects: graphs, resume, outputs and ``run.json``.

Each subject becomes one Dask computation ending in the writes of its Zarr store,
so subjects run side by side on the cluster, a failure stays with its subject,
and nothing waits on a barrier. A store is written under a temporary name and
renamed when complete; a store whose recorded fingerprint matches the config and
the input files is skipped on the next run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sciimg.errors import InputError, RunInterrupted
from sciimg.io import (
    Image,
    Subject,
    ZarrStoreWriter,
    default_dims,
    discover_subjects,
    find_gradient_files,
    open_dwi,
    open_zarr,
    write_nifti,
)
from sciimg.pipeline import neuro_steps  # noqa: F401  (registers the neuro steps)
from sciimg.pipeline._jobs import SubjectResult, _Job, _one_line, compute_jobs
from sciimg.pipeline.config import PipelineConfig
from sciimg.pipeline.outputs import hold_output, mark_interrupted
from sciimg.pipeline.records import drop_record, inside, read_record, write_record
from sciimg.pipeline.report import RunReport, write_report
from sciimg.pipeline.steps import resolve_arguments

__all__ = ["RunReport", "SubjectResult", "run_pipeline"]

logger = logging.getLogger(__name__)


def _subject_fingerprint(cfg: PipelineConfig, subject: Subject) -> str:
    files = [p for p in (subject.dwi, subject.bval, subject.bvec) if p is not None]
    files += list(find_gradient_files(subject.dwi) or ())
    stats = [
        (str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns)
        for p in files
        if p.exists()
    ]
    blob = json.dumps([cfg.fingerprint(), stats]).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _graph_keys(arrays) -> set:
    keys: set = set()
    for a in arrays:
        keys |= set(a.__dask_graph__().keys())
    return keys


def _as_image(name: str, value: Any, dwi: Image, dims) -> Image:
    import dask.array as da
    import numpy as np

    if isinstance(value, Image):
        return value
    if isinstance(value, np.ndarray):
        value = da.from_array(value)
    if not isinstance(value, da.Array):
        msg = f"result {name!r} is a {type(value).__name__}, not an array"
        raise TypeError(msg)
    if value.shape[:3] != dwi.shape[:3]:
        msg = (
            f"result {name!r} has shape {value.shape}; results must be images on "
            f"the subject's grid {dwi.shape[:3]}"
        )
        raise ValueError(msg)
    dims = dims or default_dims(value.ndim)
    gtab = dwi.gtab if value.shape == dwi.shape else None
    return Image(
        value, dwi.affine, tuple(dims), dwi.zooms, gtab=gtab, source=dwi.source
    )


def store_images(writer: ZarrStoreWriter, images, owners: dict) -> list:
    """The lazy writes of ``images``, their tasks attributed to the ``write`` step.

    The unfinished store is removed if the writes cannot even be set up.
    """
    try:
        targets = writer.store_all(images)
    except BaseException:
        writer.abort()
        raise
    for key in _graph_keys(targets):
        owners.setdefault(key, "write")
    return targets


def _build(cfg: PipelineConfig, subject: Subject, fingerprint: str) -> _Job:
    budget = cfg.chunk_memory
    dwi = open_dwi(subject.dwi, bval=subject.bval, bvec=subject.bvec, budget=budget)
    results: dict[str, Any] = {
        "dwi": dwi.data,
        "gtab": dwi.gtab,
        "affine": dwi.affine,
        "zooms": dwi.zooms,
        "subject": subject.id,
        "source": str(subject.dwi),  # named by steps' errors about its voxels
        "budget": budget,
    }
    owners = dict.fromkeys(_graph_keys([dwi.data]), "read")
    images: dict[str, Image] = {}
    for planned in cfg.plan():
        args = resolve_arguments(planned.step, results, planned.params, planned.inputs)
        out = planned.step.func(**args)
        if not isinstance(out, dict):
            out = {planned.step.outputs[0]: out}
        missing = set(planned.step.outputs) - set(out)
        if missing:
            msg = f"step {planned.name!r} did not return {sorted(missing)}"
            raise ValueError(msg)
        for name, value in out.items():
            image = _as_image(name, value, dwi, planned.step.dims.get(name))
            images[name] = image
            results[name] = image.data
        for key in _graph_keys(images[n].data for n in out) - owners.keys():
            owners[key] = planned.name
    writer = ZarrStoreWriter(
        inside(cfg.output, f"{subject.id}.zarr"),
        budget=budget,
        attrs={
            "subject": subject.id,
            "pipeline": cfg.pipeline,
            "fingerprint": fingerprint,
            "source": str(subject.dwi),
            "config": cfg.model_dump(mode="json"),
        },
    )
    targets = store_images(writer, images, owners)
    return _Job(
        subject.id,
        fingerprint,
        writer,
        targets,
        owners,
        after=lambda store: _export(cfg, subject.id, store),
    )


def _export(
    cfg: PipelineConfig, subject_id: str, store: Path, *, missing_only: bool = False
) -> list[str]:
    """Write the config's exports of a store; all of them when the store was just
    made (an older file must not outlive its store), else only those missing."""
    paths = []
    for name in cfg.export:
        out = inside(cfg.output, subject_id, f"{name}.nii.gz")
        if not (missing_only and out.exists()):
            write_nifti(open_zarr(store, name), out)
        paths.append(str(out.relative_to(cfg.output)))
    return paths


def run_pipeline(
    cfg: PipelineConfig,
    *,
    force: bool = False,
    client=None,
    progress: bool = False,
    log=print,
) -> RunReport:
    """Run a pipeline over all subjects of its input.

    Parameters
    ----------
    cfg : PipelineConfig
        From :func:`~sciimg.pipeline.load_config`.
    force : bool
        Recompute subjects whose outputs are already complete for this config.
    client : distributed.Client, optional
        Use this client; by default one is made from ``cfg.cluster`` (and closed).
    progress : bool
        Show a progress bar of the tasks.
    log : callable
        Where to say what is going on (the dashboard address, for one).

    Returns
    -------
    RunReport
        Also saved as ``<output>/run.json``. An item that failed is in it with its
        error; the others are not affected.

    Raises
    ------
    ConfigError, InputError
        Before anything is written: ``input.path`` does not exist or holds no
        items, ``output`` is a file.
    OutputError
        The output folder cannot be created or written.
    ClusterError
        The cluster could not be reached or started.
    RunInterrupted
        On Ctrl-C, once the unfinished stores are removed and ``run.json`` says
        which items were ``interrupted``; its ``report`` is that record.
    ReportError
        ``run.json`` could not be written (the items' stores are).

    Examples
    --------
    >>> from sciimg.pipeline import load_config
    >>> cfg = load_config("pipelines/neuro/demo.yaml")  # doctest: +SKIP
    >>> report = run_pipeline(cfg)                       # doctest: +SKIP
    """
    from sciimg.pipeline.cluster import connect

    if cfg.pipeline == "astro":
        from sciimg.pipeline.astro_runner import run_astro

        return run_astro(cfg, force=force, client=client, progress=progress, log=log)
    t0, started = time.perf_counter(), datetime.now(UTC)
    cfg.check_paths()
    # Everything that can be wrong with the input is said before the output
    # folder (and the previous run's record) is touched.
    undiscovered: dict[str, InputError] = {}
    subjects = discover_subjects(cfg.input.path, errors=undiscovered)
    with hold_output(cfg.output) as output:
        results: dict[str, SubjectResult] = {}
        for sid, exc in undiscovered.items():  # a duplicate id, a symlink loop
            results[sid] = SubjectResult(sid, "failed", error=_one_line(exc))
            log(f"{sid}: failed: {results[sid].error}")
        jobs: list[_Job] = []
        cluster_info: dict[str, Any] = {}
        try:
            for subject in subjects:
                _plan_subject(cfg, subject, force, jobs, results, log)
            if jobs and client is None:
                with connect(cfg.cluster, log) as own:
                    cluster_info = {
                        "kind": cfg.cluster.kind,
                        **compute_jobs(jobs, own, results, progress, log),
                    }
            elif jobs:
                cluster_info = compute_jobs(jobs, client, results, progress, log)
        except KeyboardInterrupt:
            items = [(s.id, "subject") for s in subjects]
            mark_interrupted(output, jobs, results, items)
            report = write_report(cfg, output, t0, started, cluster_info, results)
            raise RunInterrupted(report) from None
        return write_report(cfg, output, t0, started, cluster_info, results)


def _plan_subject(
    cfg: PipelineConfig,
    subject: Subject,
    force: bool,
    jobs: list[_Job],
    results: dict[str, SubjectResult],
    log,
) -> None:
    """Skip a subject whose outputs are complete and current, or add its job; a
    subject that cannot even be planned fails alone."""
    output = Path(cfg.output)
    try:
        store = inside(output, f"{subject.id}.zarr")
        fingerprint = _subject_fingerprint(cfg, subject)
        # Exports are remade from a complete store; the store itself must be there.
        record = read_record(
            output, "subject", subject.id, fingerprint, required=[store.name]
        )
        record = None if force else record
        if record is not None:
            exports = _export(cfg, subject.id, store, missing_only=True)
            if set(exports) - set(record["outputs"]):
                # Exports the config asks for only now: the record lists them too.
                write_record(
                    output,
                    "subject",
                    subject.id,
                    fingerprint,
                    [*record["outputs"], *exports],
                    timings=record.get("timings", {}),
                )
            results[subject.id] = SubjectResult(
                subject.id,
                "skipped",
                store=store.name,
                exports=exports,
                steps=record.get("timings", {}),
            )
            return
        # Not complete, or not current: nothing of it counts until it is redone.
        drop_record(output, "subject", subject.id)
        jobs.append(_build(cfg, subject, fingerprint))
    except Exception as exc:  # one bad subject must not stop the others
        results[subject.id] = SubjectResult(subject.id, "failed", error=_one_line(exc))
        log(f"{subject.id}: failed: {results[subject.id].error}")
        logger.error("%s: failed", subject.id, exc_info=exc)
