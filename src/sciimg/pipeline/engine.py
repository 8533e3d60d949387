"""One engine for every pipeline: items, resume, failures, Ctrl-C, ``run.json``.

A pipeline (`sciimg.pipeline.registry.Pipeline`) is a sequence of stages, each
a kind of item. For each stage in turn the engine finds the items, skips those
whose record says they are complete and current (same fingerprint, outputs
there), builds a Dask computation for each of the others, and computes them
side by side (`sciimg.pipeline._jobs.compute_jobs`): each item's store is
committed as soon as its own results are in, and a failure stays with its item.
The first stage's items are found before the output folder is touched, so
that what is wrong with the input is said first. The cluster starts when the
first computation needs it; the process its local workers are forked from
starts with the run (`sciimg.pipeline.worker_start`). This module names no
pipeline.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sciimg.errors import ConfigError, InputError, RunInterrupted
from sciimg.pipeline._jobs import ItemResult, Job, _one_line, compute_jobs
from sciimg.pipeline.config import PipelineConfig
from sciimg.pipeline.manifest import write_manifest
from sciimg.pipeline.outputs import hold_output, mark_interrupted
from sciimg.pipeline.records import drop_record, read_record
from sciimg.pipeline.registry import Item, Pipeline, Stage, get_pipeline
from sciimg.pipeline.report import RunReport, write_report
from sciimg.pipeline.where import Where
from sciimg.pipeline.worker_start import warm_worker_server

__all__ = ["Job", "Run", "run"]

logger = logging.getLogger(__name__)


@dataclass
class Run:
    """What a run's stages share: the config, the output folder, the results.

    Attributes
    ----------
    state : dict
        The pipeline's own, kept between its hooks (a sky map, roots of stores).
    summary : dict
        Saved in ``run.json`` under ``summary``.
    """

    cfg: PipelineConfig
    output: Path
    force: bool
    log: Any
    results: dict[str, ItemResult] = field(default_factory=dict)
    items: list[Item] = field(default_factory=list)
    metadata: dict[str, dict[str, Any]] = field(default_factory=dict)
    fingerprints: dict[str, str] = field(default_factory=dict)
    filtered: list[Item] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)

    def failed(self, item: Item, exc: BaseException) -> None:
        """Record ``item`` as failed with ``exc``, in one line and in the log."""
        self.results[item.id] = ItemResult(
            item.id, "failed", error=_one_line(exc), kind=item.kind
        )
        self.log(f"{item.id}: failed: {self.results[item.id].error}")
        logger.error("%s: failed", item.id, exc_info=exc)


class _Cluster:
    """The run's client: the caller's, or one started on first use (and closed)."""

    def __init__(
        self,
        cfg: PipelineConfig,
        client,
        log,
        stack: contextlib.ExitStack,
        worker_modules: tuple[str, ...] = (),
    ):
        self.cfg, self.client, self.log, self.stack = cfg, client, log, stack
        self.own = client is None
        if self.own and cfg.device == "cpu":
            # The workers' imports overlap with the planning that comes first.
            warm_worker_server(cfg.cluster, worker_modules)
        self.info: dict[str, Any] = {}
        self.gpu_checked = False

    def compute(self, jobs: list[Job], results, progress: bool) -> None:
        from sciimg.device import gpu_count
        from sciimg.pipeline.cluster import connect
        from sciimg.pipeline.gpu_workers import PinGpu, local_gpu_cluster

        gpu = self.cfg.device == "gpu"
        if self.client is None:
            cluster = self.cfg.cluster
            local_gpu = gpu and cluster.kind == "local"
            if local_gpu:
                cluster = local_gpu_cluster(cluster)
            self.client = self.stack.enter_context(connect(cluster, self.log))
            self.info = {"kind": cluster.kind}
            if local_gpu:  # before the workers' first CUDA call, the check's
                self.client.register_plugin(PinGpu(gpu_count()))
        if gpu and not self.gpu_checked:
            _check_workers_gpu(self.client)
            self.gpu_checked = True
        info = compute_jobs(jobs, self.client, results, progress, self.log)
        self.info.update(info)


def _check_workers_gpu(client) -> None:
    """``device: gpu`` on workers that may run elsewhere (a batch job, a
    scheduler's machines): each must have a GPU CuPy can use."""
    from sciimg.device import gpu_problem

    problems = {w: p for w, p in client.run(gpu_problem).items() if p is not None}
    if problems:
        worker, problem = next(iter(sorted(problems.items())))
        others = f" (and {len(problems) - 1} more workers)" if len(problems) > 1 else ""
        raise ConfigError(f"device: gpu: worker {worker}{others}: {problem}")


def run(
    cfg: PipelineConfig,
    *,
    force: bool = False,
    client=None,
    progress: bool = False,
    log=print,
) -> RunReport:
    """Run ``cfg``'s pipeline over all its items (see `run_pipeline`)."""
    pipeline = get_pipeline(cfg.pipeline)
    t0, started = time.perf_counter(), datetime.now(UTC)
    cfg.check_paths()
    # Everything that can be wrong with the input is said before the output
    # folder (and the previous run's record) is touched.
    undiscovered: dict[str, InputError] = {}
    first = pipeline.discover(cfg, undiscovered)
    metadata = _describe(pipeline.stages[0], cfg, first)
    first, filtered = _select(cfg, first, metadata, log)
    with hold_output(cfg.output) as output:
        state = Run(cfg, output, force, log, metadata=metadata, filtered=filtered)
        if cfg.input.where is not None:
            state.summary["where"] = {
                "expression": cfg.input.where,
                "selected": len(first),
                "filtered": len(filtered),
            }
        kind = pipeline.stages[0].kind
        for item_id, exc in undiscovered.items():  # a duplicate id, a symlink loop
            state.results[item_id] = ItemResult(
                item_id, "failed", error=_one_line(exc), kind=kind
            )
            log(f"{item_id}: failed: {state.results[item_id].error}")
        jobs: list[Job] = []
        with contextlib.ExitStack() as stack:
            cluster = _Cluster(cfg, client, log, stack, pipeline.worker_modules)
            try:
                if pipeline.start is not None:
                    pipeline.start(state)
                _stages(pipeline, state, first, jobs, cluster, progress)
                if pipeline.finish is not None:
                    pipeline.finish(state, True)
            except KeyboardInterrupt:
                stack.close()  # no worker writes into a store once it is removed
                ids = [(i.id, i.kind) for i in state.items]
                mark_interrupted(output, jobs, state.results, ids)
                if pipeline.finish is not None:
                    pipeline.finish(state, False)
                report = _report(state, t0, started, cluster.info)
                raise RunInterrupted(report) from None
        return _report(state, t0, started, cluster.info)


def _describe(stage: Stage, cfg, items: list[Item]) -> dict[str, dict[str, Any]]:
    """The items' metadata; an item whose headers cannot be read has none (it
    fails with the reason when its stage plans it)."""
    out: dict[str, dict[str, Any]] = {}
    if stage.describe is None:
        return out
    for item in items:
        try:
            out[item.id] = dict(stage.describe(cfg, item))
        except Exception as exc:
            logger.info("%s: no metadata (%s)", item.id, exc)
    return out


def _select(cfg, items: list[Item], metadata, log) -> tuple[list[Item], list[Item]]:
    """The items ``input.where`` selects, and those it leaves out. An item
    without metadata stays in, to fail with its own error."""
    if cfg.input.where is None:
        return items, []
    where = Where(cfg.input.where)
    where.check_names({"id"} | {k for md in metadata.values() for k in md})
    keep = [
        i
        for i in items
        if i.id not in metadata or where({"id": i.id, **metadata[i.id]})
    ]
    left = [i for i in items if i not in keep]
    kind = items[0].kind if items else "item"
    log(f"input.where: {len(keep)} of {len(items)} {kind}s selected")
    return keep, left


def _manifest(state: Run) -> None:
    rows = []
    for item in [*state.items, *state.filtered]:
        r = state.results.get(item.id)
        md = dict(state.metadata.get(item.id, {}))
        rows.append(
            {
                "id": item.id,
                "kind": item.kind,
                "status": r.status if r else "filtered",
                "fingerprint": state.fingerprints.get(item.id),
                "seconds": r.seconds if r else None,
                "error": r.error if r else None,
                "step": r.step if r else None,
                "store": r.store if r else None,
                "device": state.cfg.device,
                **md,
            }
        )
    write_manifest(state.output, rows)


def _report(state: Run, t0, started, info) -> RunReport:
    _manifest(state)
    return write_report(
        state.cfg, state.output, t0, started, info, state.results, state.summary
    )


def _stages(
    pipeline: Pipeline, state: Run, first: list[Item], jobs, cluster, progress
) -> None:
    for n, stage in enumerate(pipeline.stages):
        items = first if n == 0 else (stage.items(state) if stage.items else [])
        if n > 0:
            state.metadata.update(_describe(stage, state.cfg, items))
        state.items.extend(items)
        todo = []
        for item in items:
            job = _plan(stage, state, item)
            if job is not None:
                todo.append(job)
                jobs.append(job)  # its store is removed if Ctrl-C comes
        try:
            if todo:
                cluster.compute(todo, state.results, progress)
        finally:
            if stage.done is not None:
                stage.done(state)


def _plan(stage: Stage, state: Run, item: Item) -> Job | None:
    """Skip an item whose outputs are complete and current, or build its job;
    an item that cannot even be planned fails alone."""
    try:
        fingerprint = stage.fingerprint(state, item)
        state.fingerprints[item.id] = fingerprint
        required = stage.required(state, item) if stage.required else None
        record = read_record(state.output, item.kind, item.id, fingerprint, required)
        if record is not None and not state.force:
            state.results[item.id] = (
                stage.skipped(state, item, record)
                if stage.skipped
                else ItemResult(
                    item.id,
                    "skipped",
                    kind=item.kind,
                    store=stage.store(item) if stage.store else None,
                    steps=record.get("timings", {}),
                )
            )
            return None
        # Not complete, or not current: nothing of it counts until it is redone.
        drop_record(state.output, item.kind, item.id)
        if stage.outdated is not None:
            stage.outdated(state, item)
        return stage.build(state, item, fingerprint)
    except Exception as exc:  # one bad item must not stop the others
        state.failed(item, exc)
        return None
