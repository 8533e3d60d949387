"""``sciimg info`` and ``sciimg ingest`` on FITS files: what the table shows, and
how exposures and single images are stored."""

import numpy as np
import pytest
from astropy.io import fits
from rich.console import Console
from typer.testing import CliRunner

from sciimg.io import image_names, open_zarr
from tests.io.fits_files import M13, write_exposure


@pytest.fixture
def cli(monkeypatch):
    from sciimg import _cli_files, _cli_info, _console
    from sciimg import cli as module

    # A wide console, so that no table cell is folded across lines.
    wide = Console(width=250)
    for printing in (module, _cli_files, _cli_info):
        monkeypatch.setattr(printing, "out", wide)
    monkeypatch.setattr(_console, "err", Console(width=250, stderr=True))
    runner = CliRunner()
    return lambda *args: runner.invoke(module.app, [str(a) for a in args])


def test_cli_info_and_ingest_fits(tmp_path, cli):
    path = tmp_path / "exp.fits"
    arrays = write_exposure(path)
    info = cli("info", path)
    assert info.exit_code == 0, info.output
    for text in (
        "3 image HDU(s)",
        "image (exp.fits)",
        "mask (exp.fits)",
        "variance (exp.fits)",
        "float32",
        "RA---TAN DEC--TAN (ICRS)",
        "arcsec/pixel",
    ):
        assert text in info.output, info.output
    store = tmp_path / "exp.zarr"
    run = cli("ingest", path, M13 / "m13_rice.fits", "--out", store)
    assert run.exit_code == 0, run.output
    # One entry per file: the exposure a group of its HDUs, m13 an image.
    assert sorted(image_names(store)) == ["exp", "m13_rice"]
    assert sorted(image_names(store / "exp")) == ["image", "mask", "variance"]
    for name in ("image", "mask", "variance"):
        back = open_zarr(store / "exp", name)
        np.testing.assert_array_equal(back.data.compute(), arrays[name.upper()])
    again = cli("info", store / "m13_rice")
    assert again.exit_code == 0 and "RA---TAN DEC--TAN (FK5)" in again.output
    twice = cli("ingest", path, path, "--out", tmp_path / "twice.zarr")
    assert twice.exit_code == 2 and "would be stored as 'exp'" in twice.output
    m13 = tmp_path / "m13.fits"
    with fits.open(M13 / "m13.fits") as hdul:
        hdul[0].header.update(FILTER="r", EXPTIME=30.0)
        hdul.writeto(m13)
    shown = cli("info", m13)
    assert shown.exit_code == 0, shown.output
    for text in ("1 image HDU", "int16", "(300, 300)", "FILTER r, EXPTIME 30.0"):
        assert text in shown.output, shown.output
    bad = cli("info", tmp_path / "twice.zarr")
    assert bad.exit_code == 2 and "does not exist" in bad.output
