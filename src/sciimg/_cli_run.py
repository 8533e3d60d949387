"""``sciimg run``: a pipeline over every item of its input, with one line per
problem on the console and the details in the run's log file.

Exit statuses: 0 when every item is done or skipped; 1 when an item failed or
the run's record could not be written; 2 for a config or usage error, found
before any item is computed; 130 when interrupted (Ctrl-C).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from sciimg._cli_cluster import (
    ClusterKind,
    MemoryOpt,
    SchedulerOpt,
    WorkersOpt,
    cluster_overrides,
)
from sciimg._console import err, out
from sciimg._console import fail as _fail
from sciimg._runlog import run_log
from sciimg.errors import (
    ClusterError,
    ConfigError,
    InputError,
    OutputError,
    ReportError,
    RunInterrupted,
)

__all__ = ["run"]

logger = logging.getLogger("sciimg.cli")

#: Errors that stop a run before any item is computed: a problem with the
#: config, the input, the output folder or the cluster, said in one line.
_BEFORE = (ConfigError, InputError, OutputError, ClusterError)


def _say(message: str) -> None:
    out.print(message, highlight=False, soft_wrap=True)
    logger.info(message)


def run(
    config: Annotated[Path, typer.Argument(help="Pipeline YAML file.")],
    force: Annotated[
        bool, typer.Option(help="Redo subjects already complete.")
    ] = False,
    cluster: ClusterKind = None,
    scheduler: SchedulerOpt = None,
    workers: WorkersOpt = None,
    memory_limit: MemoryOpt = None,
    device: Annotated[
        str | None,
        typer.Option(
            help="cpu or gpu: where the chunks are computed (the config's device)."
        ),
    ] = None,
    progress: Annotated[
        bool | None,
        typer.Option(
            help="Show a task progress bar (default: when writing to a terminal)."
        ),
    ] = None,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="Also show tracebacks and Dask's messages on the console "
            "(they always go to the run's log file).",
        ),
    ] = False,
) -> None:
    """Run the pipeline a CONFIG file describes over all its subjects."""
    from sciimg.pipeline import load_config

    overrides, replace = cluster_overrides(cluster, scheduler, workers, memory_limit)
    if device is not None:
        overrides = {**overrides, "device": device}
    try:
        cfg = load_config(config, overrides, replace)
        cfg.check_paths()
    except ConfigError as exc:
        _fail(str(exc))
    if progress is None:
        progress = sys.stdout.isatty()
    with run_log(cfg.output, verbose=verbose) as log_path:
        report = _run_logged(cfg, force, progress, log_path)
    _print_report(report, log_path)
    if not report.ok:
        raise typer.Exit(1)


def _run_logged(cfg, force: bool, progress: bool, log_path: Path):
    """The run, with every way it can stop turned into one line and a status."""
    from sciimg.pipeline import run_pipeline
    from sciimg.pipeline.cluster import describe

    where = f"traceback in {log_path}"
    try:
        _say(
            f"sciimg {cfg.pipeline} pipeline: steps "
            f"{', '.join(s.name for s in cfg.plan())} -> {cfg.output}, "
            f"on {describe(cfg.cluster)}"
        )
        return run_pipeline(cfg, force=force, progress=progress, log=_say)
    except RunInterrupted as exc:
        counts = exc.report.counts()
        failed = f", {counts['failed']} failed" if counts["failed"] else ""
        _stop(
            f"interrupted: {counts['done'] + counts['skipped']} done{failed}, "
            f"{counts['interrupted']} not finished; rerun to continue"
        )
    except KeyboardInterrupt:
        _stop("interrupted before any item started; nothing was written")
    except _BEFORE as exc:
        logger.error("stopped before any item ran", exc_info=exc)
        _fail(str(exc))
    except ReportError as exc:
        logger.error("the run's record was not saved", exc_info=exc)
        _fail(f"{exc}; the items' own outputs are written ({where})", 1)
    except Exception as exc:
        logger.error("unexpected error", exc_info=exc)
        text = " ".join(str(exc).split())
        _fail(f"{type(exc).__name__}: {text} ({where})", 1)


def _stop(message: str) -> None:
    """Ctrl-C: one line, no traceback, status 130 (128 + SIGINT) as shells do."""
    logger.info(message)
    err.print(f"[yellow]{message}[/yellow]", highlight=False, soft_wrap=True)
    raise typer.Exit(130)


def _print_report(report, log_path: Path) -> None:
    table = Table(title=f"{report.pipeline}: {report.output}")
    kinds = sorted({s.kind for s in report.subjects})
    for col in (
        "item" if len(kinds) > 1 else kinds[0] if kinds else "subject",
        "status",
        "time (s)",
        "message",
    ):
        table.add_column(col, overflow="fold")
    colour = {"done": "green", "skipped": "cyan", "failed": "red"}
    for s in report.subjects:
        table.add_row(
            s.id if len(kinds) < 2 else f"{s.kind} {s.id}",
            f"[{colour.get(s.status, 'yellow')}]{s.status}[/]",
            f"{s.seconds:.1f}" if s.seconds is not None else "-",
            f"{s.step}: {s.error}" if s.step else s.error or "",
        )
    out.print()
    out.print(table)
    counts = report.counts()
    if "sources" in report.summary:
        # Name the catalog only if this run wrote one.
        catalog = Path(report.output) / "catalog.parquet"
        written = "catalog.parquet" in report.summary.get("catalog", ())
        where = f"in {catalog}" if written and catalog.is_file() else "(no catalog)"
        out.print(f"{report.summary['sources']} sources {where}", soft_wrap=True)
    details = f"details in {Path(report.output) / 'run.json'}"
    if counts["failed"]:
        details += f", tracebacks in {log_path}"
    out.print(
        f"{counts['done']} done, {counts['skipped']} skipped, "
        f"{counts['failed']} failed in {report.wall_seconds:.1f} s; {details}",
        highlight=False,
        soft_wrap=True,
    )
