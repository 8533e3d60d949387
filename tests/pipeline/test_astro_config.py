"""Invalid astronomy configs: each mistake is one line from ``load_config`` and
from ``sciimg run`` (status 2), before anything is written."""

import re

import pytest
import yaml
from typer.testing import CliRunner

from sciimg.cli import app
from sciimg.errors import ConfigError
from sciimg.pipeline import load_config


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ({"warp": {}}, r"steps\.warp: unknown step \(the astro pipeline's steps are"),
        (
            {"coadd": {"clip": "median"}},
            r"steps\.coadd\.clip: Input should be 'variance' or 'stack' "
            r"\(got 'median'\)",
        ),
        (
            {"mine": {"function": "tests.pipeline.udfs:white_matter"}},
            r"steps\.mine: unknown step",
        ),
        (
            {"coadd": {"function": "tests.pipeline.udfs:white_matter"}},
            r"steps\.coadd\.function: unknown key",
        ),
    ],
    ids=["unknown-step", "bad-clip", "own-step", "own-function-for-builtin"],
)
def test_config_errors(tmp_path, steps, message):
    raw = {
        "pipeline": "astro",
        "input": {"path": str(tmp_path)},
        "output": str(tmp_path / "out"),
        "steps": steps,
    }
    with pytest.raises(ConfigError, match=message) as info:
        load_config(raw)
    assert "\n" not in str(info.value)
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(raw))
    cli = CliRunner().invoke(app, ["run", str(config)])
    assert cli.exit_code == 2
    assert re.search(message, cli.output), cli.output
    assert not (tmp_path / "out").exists()
