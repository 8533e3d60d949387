"""The ``sciimg`` command: run, jobscript, synth, ingest, info, bench."""

from __future__ import annotations

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
    jobscript,
)
from sciimg._cli_files import info, ingest, main_options, synth_astro, synth_neuro
from sciimg._console import fail as _fail
from sciimg._console import out
from sciimg.errors import ConfigError, InputError

app = typer.Typer(
    help="Scientific image pipelines on Dask.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.callback()(main_options)  # --version
synth_app = typer.Typer(
    help="Write synthetic datasets with ground truth.", no_args_is_help=True
)
app.add_typer(synth_app, name="synth")


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="Pipeline YAML file.")],
    force: Annotated[
        bool, typer.Option(help="Redo subjects already complete.")
    ] = False,
    cluster: ClusterKind = None,
    scheduler: SchedulerOpt = None,
    workers: WorkersOpt = None,
    memory_limit: MemoryOpt = None,
    progress: Annotated[
        bool | None,
        typer.Option(
            help="Show a task progress bar (default: when writing to a terminal)."
        ),
    ] = None,
) -> None:
    """Run the pipeline a CONFIG file describes over all its subjects."""
    from sciimg.pipeline import load_config, run_pipeline

    overrides, replace = cluster_overrides(cluster, scheduler, workers, memory_limit)
    try:
        cfg = load_config(config, overrides, replace)
        from sciimg.pipeline.cluster import describe

        out.print(
            f"sciimg {cfg.pipeline} pipeline: steps "
            f"{', '.join(s.name for s in cfg.plan())} -> {cfg.output}, "
            f"on {describe(cfg.cluster)}",
            highlight=False,
            soft_wrap=True,
        )
        if progress is None:
            progress = sys.stdout.isatty()
        report = run_pipeline(
            cfg,
            force=force,
            progress=progress,
            log=lambda m: out.print(m, highlight=False, soft_wrap=True),
        )
    except (ConfigError, InputError, TimeoutError) as exc:
        _fail(str(exc))
    table = Table(title=f"{cfg.pipeline}: {report.output}")
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
            f"[{colour[s.status]}]{s.status}[/]",
            f"{s.seconds:.1f}" if s.seconds is not None else "-",
            f"{s.step}: {s.error}" if s.step else s.error or "",
        )
    out.print()
    out.print(table)
    counts = report.counts()
    if "sources" in report.summary:
        catalog = Path(report.output) / "catalog.parquet"
        # Name the catalog only if this run wrote one.
        written = "catalog.parquet" in report.summary.get("catalog", ())
        where = f"in {catalog}" if written and catalog.is_file() else "(no catalog)"
        out.print(f"{report.summary['sources']} sources {where}", soft_wrap=True)
    out.print(
        f"{counts['done']} done, {counts['skipped']} skipped, "
        f"{counts['failed']} failed in {report.wall_seconds:.1f} s; "
        f"details in {Path(report.output) / 'run.json'}"
    )
    if not report.ok:
        raise typer.Exit(1)


app.command()(jobscript)  # after run, so --help lists them in that order


synth_app.command("neuro")(synth_neuro)
synth_app.command("astro")(synth_astro)
app.command()(ingest)
app.command()(info)


def _ints(text: str, option: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        _fail(f"{option} takes positive integers separated by commas, not {text!r}")
    return values


@app.command()
def bench(
    pipeline: Annotated[str, typer.Argument(help="neuro or astro.")],
    engines: Annotated[
        str, typer.Option(help="Comma-separated: dask, spark, relational, serial.")
    ] = "dask,spark,relational,serial",
    size: Annotated[
        str, typer.Option(help="tiny, small, medium (or hcp, neuro only).")
    ] = "tiny",
    subjects: Annotated[
        str | None, typer.Option(help="Neuro: numbers of subjects, e.g. 1,2,4.")
    ] = None,
    visits: Annotated[
        str | None, typer.Option(help="Astro: numbers of visits, e.g. 2,4,8.")
    ] = None,
    workers: Annotated[
        str, typer.Option(help="Numbers of workers (threads for relational).")
    ] = "1,2",
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder for results, plots and runs.")
    ] = Path("bench"),
    cache: Annotated[
        Path | None,
        typer.Option(help="Folder of the generated workloads (default OUT/data)."),
    ] = None,
    spark_master: Annotated[
        str | None,
        typer.Option(help="Spark master URL (default local[WORKERS])."),
    ] = None,
) -> None:
    """Compare engines on the same pipeline, data and kernels (docs/benchmarks.md)."""
    from sciimg.bench import run_bench
    from sciimg.bench._workloads import check_workload

    try:
        check_workload(pipeline)
    except ValueError as exc:
        _fail(str(exc))
    wrong = "--visits" if pipeline == "neuro" else "--subjects"
    if (visits if pipeline == "neuro" else subjects) is not None:
        _fail(f"{wrong} does not apply to the {pipeline} pipeline")
    counts_text = subjects if pipeline == "neuro" else visits
    option = "--subjects" if pipeline == "neuro" else "--visits"
    counts = _ints(counts_text or ("1" if pipeline == "neuro" else "2"), option)
    try:
        results = run_bench(
            pipeline,
            engines=[e.strip() for e in engines.split(",") if e.strip()],
            size=size,
            counts=counts,
            workers=_ints(workers, "--workers"),
            out=out_dir,
            cache=cache,
            spark_master=spark_master,
            log=lambda m: out.print(m, highlight=False, soft_wrap=True),
        )
    except ValueError as exc:
        _fail(str(exc))
    out.print()
    out.print((out_dir / "results.md").read_text(), highlight=False, soft_wrap=True)
    bad = [
        r
        for r in results["runs"]
        if not r["ok"] or not r.get("agreement", {"agree": True})["agree"]
    ]
    out.print(f"results in {out_dir / 'results.json'}, plots in {out_dir}/*.png")
    if bad:
        raise typer.Exit(1)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
