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
from sciimg._console import fail as _fail
from sciimg._console import out
from sciimg.errors import ConfigError, InputError

app = typer.Typer(
    help="Scientific image pipelines on Dask.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
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


@synth_app.command("neuro")
def synth_neuro(
    out_dir: Annotated[Path, typer.Argument(help="Dataset folder to write (BIDS).")],
    subjects: Annotated[int, typer.Option(min=1)] = 2,
    shape: Annotated[tuple[int, int, int], typer.Option(help="Volume shape X Y Z.")] = (
        32,
        32,
        20,
    ),
    seed: Annotated[int, typer.Option()] = 0,
    snr: Annotated[float, typer.Option(help="White-matter b0 SNR.")] = 20.0,
    directions: Annotated[
        int | None,
        typer.Option(help="Directions per shell (default 10, or 90 with --hcp)."),
    ] = None,
    hcp: Annotated[
        bool, typer.Option(help="HCP size: 145x174x145, 288 volumes, 1.25 mm.")
    ] = False,
) -> None:
    """Write a diffusion-MRI head phantom with ground truth (labels, FA, MD)."""
    from sciimg.synth import write_neuro_dataset

    paths = write_neuro_dataset(
        out_dir,
        subjects=subjects,
        shape=shape,
        seed=seed,
        snr=snr,
        hcp=hcp,
        directions=directions,
    )
    out.print(
        f"wrote {len(paths)} subject(s) to {out_dir} "
        f"(truth in {out_dir / 'derivatives' / 'truth'})"
    )


@synth_app.command("astro")
def synth_astro(
    out_dir: Annotated[Path, typer.Argument(help="Survey folder to write.")],
    visits: Annotated[int, typer.Option(min=1)] = 4,
    ccds: Annotated[int, typer.Option(min=1, help="CCDs per visit.")] = 4,
    ccd_shape: Annotated[
        tuple[int, int], typer.Option(help="CCD shape H W (pixels).")
    ] = (256, 256),
    seed: Annotated[int, typer.Option()] = 0,
    overwrite: Annotated[
        bool, typer.Option(help="Replace an existing survey.")
    ] = False,
) -> None:
    """Write a synthetic sky survey (FITS exposures) with a truth catalog."""
    from sciimg.synth import write_astro_survey

    try:
        survey = write_astro_survey(
            out_dir,
            visits=visits,
            ccds=ccds,
            ccd_shape=tuple(ccd_shape),
            seed=seed,
            overwrite=overwrite,
        )
    except (ValueError, FileExistsError) as exc:
        _fail(str(exc))
    out.print(
        f"wrote {len(survey.exposures)} exposure(s) of {survey.n_stars} stars and "
        f"{survey.n_galaxies} galaxies to {out_dir} (truth in {survey.catalog.parent})"
    )


@app.command()
def ingest(
    files: Annotated[list[Path], typer.Argument(help="Image files to convert.")],
    out_store: Annotated[Path, typer.Option("--out", help="Zarr store to write.")],
    chunk_memory: Annotated[
        str | None, typer.Option(help="Bytes per chunk, e.g. 64MiB.")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing store.")] = False,
) -> None:
    """Convert image files into one Zarr store (one image group per file).

    A FITS file with several image HDUs (an exposure's IMAGE, MASK, VARIANCE)
    gives one group per HDU, named by its lowercase EXTNAME.
    """
    from sciimg.io import image_stem, open_fits_images, open_image, write_zarr
    from sciimg.io._fits import fits_stem, is_fits

    if out_store.exists() and not overwrite:
        _fail(f"{out_store}: exists; use --overwrite to replace it")
    images = {}
    try:
        for f in files:
            if is_fits(f):
                found = open_fits_images(f, budget=chunk_memory)
                if len(found) == 1:
                    found = {fits_stem(f): next(iter(found.values()))}
            else:
                found = {image_stem(f): open_image(f, budget=chunk_memory)}
            for name, img in found.items():
                if name in images:
                    _fail(f"{f}: a second image named {name!r}")
                images[name] = img
        write_zarr(out_store, images, budget=chunk_memory)
    except InputError as exc:
        _fail(str(exc))
    out.print(f"wrote {len(images)} image(s) to {out_store}: {', '.join(images)}")


def _describe(name: str, img) -> Table:
    table = Table(title=name, show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value", overflow="fold")
    chunk = tuple(c[0] for c in img.data.chunks)
    table.add_row("shape", f"{img.shape}  ({', '.join(img.dims)})")
    table.add_row("dtype", str(img.dtype))
    table.add_row("chunks", f"{chunk}  ({img.data.npartitions} chunks)")
    unit = {"arcsecond": "arcsec"}.get(img.attrs.get("space_unit", ""), "mm")
    label = "pixel size" if unit == "arcsec" else "voxel size"
    table.add_row(f"{label} ({unit})", ", ".join(f"{z:g}" for z in img.zooms))
    table.add_row(
        "affine", "\n".join(" ".join(f"{v:9.4f}" for v in row) for row in img.affine)
    )
    if img.gtab is not None:
        import numpy as np

        shells = ", ".join(f"{b:g}" for b in np.unique(np.round(img.gtab.bvals, -2)))
        table.add_row(
            "gradients",
            f"{len(img.gtab.bvals)} volumes, "
            f"{int(img.gtab.b0s_mask.sum())} b0; shells {shells}",
        )
    if img.source:
        table.add_row("source", img.source)
    return table


@app.command()
def info(path: Annotated[Path, typer.Argument(help="A file or Zarr store.")]) -> None:
    """Describe an image file or a Zarr store: shape, dtype, chunks, geometry."""
    from sciimg.io import iter_images, open_fits_images, open_image, store_attrs
    from sciimg.io._fits import describe_wcs, is_fits
    from sciimg.io._zarr import image_names

    def show(name: str, img) -> None:
        table = _describe(name, img)
        if (sky := describe_wcs(img)) is not None:
            table.add_row("wcs", sky)
        if "hdu" in img.attrs:  # read from FITS: say which HDU, and what it shows
            table.add_row("hdu", str(img.attrs["hdu"]))
            header = img.attrs.get("header") or {}
            seen = [
                f"{key} {header[key]}"
                for key in ("OBJECT", "FILTER", "EXPTIME", "MJD-OBS", "DATE-OBS")
                if header.get(key) not in (None, "")
            ]
            if seen:
                table.add_row("observation", ", ".join(seen))
        out.print(table)

    try:
        if path.is_dir() and (path / "zarr.json").exists() and image_names(path):
            attrs = store_attrs(path)
            out.print(
                f"[bold]{path}[/bold]: Zarr store, sciimg "
                f"{attrs.get('version', '?')}"
                + (f", subject {attrs['subject']}" if "subject" in attrs else "")
            )
            for name, img in iter_images(path):
                show(name, img)
        elif is_fits(path):
            found = open_fits_images(path)
            out.print(f"[bold]{path}[/bold]: FITS, {len(found)} image HDU(s)")
            for name, img in found.items():
                show(f"{name} ({path.name})" if len(found) > 1 else str(path), img)
        else:
            show(str(path), open_image(path))
    except InputError as exc:
        _fail(str(exc))


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
