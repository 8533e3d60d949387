"""The ``sciimg`` command: run, jobscript, synth, ingest, info, bench."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from sciimg._cli_cluster import jobscript
from sciimg._cli_files import info, ingest, main_options, synth_astro, synth_neuro
from sciimg._cli_run import run
from sciimg._console import fail as _fail
from sciimg._console import out

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


app.command()(run)
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
    pipeline: Annotated[
        str, typer.Argument(help="A pipeline with a benchmark: neuro or astro.")
    ],
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
    count: Annotated[
        str | None,
        typer.Option(help="Numbers of items of any pipeline (its subjects, visits)."),
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
    from sciimg.bench import check_workload, run_bench

    try:
        suite = check_workload(pipeline)
    except ValueError as exc:
        _fail(str(exc))
    given = {"subjects": subjects, "visits": visits}
    for unit, text in given.items():
        if text is not None and unit != suite.unit:
            _fail(f"--{unit} does not apply to the {pipeline} pipeline")
    option = f"--{suite.unit}" if suite.unit in given else "--count"
    text = count or given.get(suite.unit) or str(suite.default_count)
    counts = _ints(text, "--count" if count else option)
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
