"""An exposure that is damaged (truncated, without its VARIANCE, without a WCS,
all NaN) fails alone: the error names the file in one line, through the API, the
command line and run.json, and every patch is co-added from the exposures that
remain, with no store of the failed exposure left behind."""

import json
import os
import re
import shutil
import subprocess

import pytest
import yaml
import zarr
from typer.testing import CliRunner

from sciimg.cli import app
from sciimg.pipeline import run_pipeline
from tests.pipeline.astro_runs import (
    BAD,
    BAD_FILE,
    EXPOSURES,
    SCIIMG,
    _all_nan,
    _catalog,
    _config,
    _copy,
    _drop_variance,
    _patches,
    _raw,
    _statuses,
    _strip_wcs,
    _temporaries,
    _truncate,
)

DAMAGES = [
    (_truncate, r"is truncated: HDU 1 \(IMAGE\) needs \d+ bytes, file has \d+"),
    (_drop_variance, r"has no VARIANCE extension \(extensions: IMAGE, MASK\)"),
    (_strip_wcs, r"HDU 1 \(IMAGE\) has no celestial WCS"),
    (_all_nan, "all pixels are NaN or infinite"),
]


@pytest.mark.parametrize(
    ("damage", "problem"), DAMAGES, ids=[d[0].__name__.strip("_") for d in DAMAGES]
)
def test_one_bad_exposure(survey, client, tmp_path, damage, problem):
    data = _copy(survey, tmp_path / "data")
    bad = data / BAD_FILE
    damage(bad)
    out = tmp_path / "out"
    logged = []
    report = run_pipeline(_config(data, out), client=client, log=logged.append)

    exposures = _statuses(report, "exposure")
    assert exposures == {e: "failed" if e == BAD else "done" for e in EXPOSURES}
    error = next(s.error for s in report.subjects if s.id == BAD)
    assert "\n" not in error and error.startswith(f"{bad}: ")
    assert re.search(problem, error), error
    # Damage found while reading fails before any step; the rest names its step.
    said = rf"{BAD}: failed( in step calibrate)?: {re.escape(error)}"
    assert [m for m in logged if m.startswith(f"{BAD}: failed")] == [
        m for m in logged if re.fullmatch(said, m)
    ]
    assert any(re.fullmatch(said, m) for m in logged)
    run = json.loads((out / "run.json").read_text())
    failed = [s for s in run["subjects"] if s["status"] == "failed"]
    assert [(s["id"], s["kind"], s["error"]) for s in failed] == [
        (BAD, "exposure", error)
    ]

    # Every patch is co-added from the exposures that remain.
    patches = _statuses(report, "patch")
    assert patches and set(patches.values()) == {"done"}
    stored = _patches(out)
    assert set(stored) == set(patches)
    used = set()
    for attrs in stored.values():
        assert attrs["exposures"] and BAD not in attrs["exposures"]
        used |= set(attrs["exposures"])
    assert used == set(EXPOSURES) - {BAD}
    assert len(_catalog(out)) > 0
    assert report.summary["sources"] == len(_catalog(out))

    # Nothing of the failed exposure looks like an output; nothing is left over.
    assert not (out / "calexp.zarr" / BAD).exists()
    good = [e for e in EXPOSURES if e != BAD]
    stores = [p.name for p in (out / "calexp.zarr").iterdir() if p.is_dir()]
    assert sorted(stores) == sorted([*good, "OME"])  # OME lists the images
    group = zarr.open_group(out / "calexp.zarr", mode="r")
    assert sorted(group.group_keys()) == sorted([*good, "OME"])
    listed = {s.split("/")[0] for s in group["OME"].attrs["ome"]["series"]}
    assert sorted(listed) == good
    assert _temporaries(out) == []

    # Through the command line, on the same output and cluster: the bad exposure
    # fails again (it is not skipped), the rest is skipped, and the status is 1.
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(_raw(data, out)))
    cli = CliRunner().invoke(
        app,
        ["run", str(config), "--scheduler", client.scheduler.address],
        env={"COLUMNS": "1000"},  # no wrapping: see test_cli_narrow_terminal
    )
    assert cli.exit_code == 1, cli.output
    assert any(re.fullmatch(said, line) for line in cli.output.splitlines())
    assert f"0 done, {len(EXPOSURES) - 1 + len(patches)} skipped, 1 failed" in (
        cli.output
    )
    assert _temporaries(out) == []


def test_real_command_line(survey, client, tmp_path):
    data = _copy(survey, tmp_path / "data")
    bad = data / BAD_FILE
    _truncate(bad)
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(_raw(data, tmp_path / "out")))
    run = subprocess.run(
        [*SCIIMG, "run", str(config), "--scheduler", client.scheduler.address],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "1000"},
    )
    assert run.returncode == 1, run.stdout + run.stderr
    lines = [line for line in run.stdout.splitlines() if str(bad) in line]
    assert lines and re.fullmatch(
        rf"{BAD}: failed: {re.escape(str(bad))}: is truncated: .*", lines[0]
    )
    assert re.search(r"\d+ done, 0 skipped, 1 failed", run.stdout)
    report = json.loads((tmp_path / "out" / "run.json").read_text())
    assert [s["id"] for s in report["subjects"] if s["status"] == "failed"] == [BAD]


def test_cli_narrow_terminal(survey, client, tmp_path):
    data = tmp_path / "data" / "a-folder-name-long-enough-to-wrap"
    data.mkdir(parents=True)
    bad = data / "ccd-0.fits"
    shutil.copy(survey / BAD_FILE, bad)
    _truncate(bad)
    raw = {**_raw(data, tmp_path / "out"), "input": {"path": [str(bad)]}}
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(raw))
    cli = CliRunner().invoke(
        app,
        ["run", str(config), "--scheduler", client.scheduler.address],
        env={"COLUMNS": "80"},
    )
    assert cli.exit_code == 1
    line = f"ccd-0: failed: {bad}: is truncated: "
    assert any(x.startswith(line) for x in cli.output.splitlines()), cli.output
