"""The command line's data tools: ``synth neuro|astro``, ``ingest``, and
``--version`` (``info`` is in its own module)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sciimg._cli_info import info
from sciimg._console import fail as _fail
from sciimg._console import out
from sciimg.errors import FolderNotEmptyError, InputError

__all__ = ["info", "ingest", "main_options", "synth_astro", "synth_neuro"]

Overwrite = Annotated[
    bool, typer.Option(help="Write into a folder that is not empty, replacing files.")
]


def _version(value: bool) -> None:
    if value:
        from sciimg import __version__

        out.print(f"sciimg {__version__}", highlight=False)
        raise typer.Exit()


def main_options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print the version and exit.",
            callback=_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    # No docstring: Typer would put it in place of the app's help.
    pass


def _synth(write, out_dir: Path, **options):
    """Call a synthetic-data writer; what it refuses, as one line."""
    try:
        return write(out_dir, **options)
    except FolderNotEmptyError as exc:
        # The library speaks of overwrite=True; here the switch is a flag.
        _fail(f"{exc.path}: is not empty; pass --overwrite to write there")
    except (ValueError, FileExistsError) as exc:
        _fail(str(exc))


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
        bool,
        typer.Option(help="HCP size: 145x174x145, 287 volumes (HCP: 288), 1.25 mm."),
    ] = False,
    overwrite: Overwrite = False,
) -> None:
    """Write a diffusion-MRI head phantom with ground truth (labels, FA, MD)."""
    from sciimg.synth import write_neuro_dataset

    paths = _synth(
        write_neuro_dataset,
        out_dir,
        subjects=subjects,
        shape=shape,
        seed=seed,
        snr=snr,
        hcp=hcp,
        directions=directions,
        overwrite=overwrite,
    )
    out.print(
        f"wrote {len(paths)} subject(s) to {out_dir} "
        f"(truth in {out_dir / 'derivatives' / 'truth'})"
    )


def synth_astro(
    out_dir: Annotated[Path, typer.Argument(help="Survey folder to write.")],
    visits: Annotated[int, typer.Option(min=1)] = 4,
    ccds: Annotated[int, typer.Option(min=1, help="CCDs per visit.")] = 4,
    ccd_shape: Annotated[
        tuple[int, int], typer.Option(help="CCD shape H W (pixels).")
    ] = (256, 256),
    seed: Annotated[int, typer.Option()] = 0,
    overwrite: Overwrite = False,
) -> None:
    """Write a synthetic sky survey (FITS exposures) with a truth catalog."""
    from sciimg.synth import write_astro_survey

    survey = _synth(
        write_astro_survey,
        out_dir,
        visits=visits,
        ccds=ccds,
        ccd_shape=tuple(ccd_shape),
        seed=seed,
        overwrite=overwrite,
    )
    out.print(
        f"wrote {len(survey.exposures)} exposure(s) of {survey.n_stars} stars and "
        f"{survey.n_galaxies} galaxies to {out_dir} (truth in {survey.catalog.parent})"
    )


def ingest(
    files: Annotated[list[Path], typer.Argument(help="Image files to convert.")],
    out_store: Annotated[Path, typer.Option("--out", help="Zarr store to write.")],
    chunk_memory: Annotated[
        str | None, typer.Option(help="Bytes per chunk, e.g. 64MiB.")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing store.")] = False,
) -> None:
    """Convert image files into one Zarr store, one entry named after each file.

    A file of one image becomes an image group; a FITS file of several image
    HDUs (an exposure's IMAGE, MASK, VARIANCE) a group of one image group per
    HDU, named by lowercase EXTNAME, laid out as the pipeline's calexp.zarr.
    """
    from sciimg.io import chunk_budget, ingest_files

    if out_store.exists() and not overwrite:
        _fail(f"{out_store}: exists; pass --overwrite to replace it")
    if chunk_memory is not None:
        try:
            chunk_budget(chunk_memory)
        except ValueError as exc:
            _fail(f"--chunk-memory: {exc}")
    try:
        entries = ingest_files(files, out_store, chunk_memory=chunk_memory)
    except InputError as exc:
        _fail(str(exc))
    said = [f"{n} ({', '.join(hdus)})" if hdus else n for n, hdus in entries.items()]
    out.print(
        f"wrote {len(entries)} file(s) to {out_store}: {', '.join(said)}",
        highlight=False,
        soft_wrap=True,
    )
