"""Fixtures of the astronomy runner tests: the tiny synthetic survey, generated
once, and a calibration whose output fails while it is being written."""

import numpy as np
import pytest

from sciimg.synth import write_astro_survey
from tests.pipeline.astro_runs import BAD_FILE


@pytest.fixture(scope="session")
def survey(tmp_path_factory):
    """3 visits of 2 CCDs; tests copy it before damaging any file."""
    root = tmp_path_factory.mktemp("survey")
    write_astro_survey(root, visits=3, ccds=2, ccd_shape=(128, 128), seed=0)
    return root


def _disk_full(block):
    raise OSError("No space left on device (simulated)")


@pytest.fixture
def fail_mid_write(monkeypatch):
    """Calibration of BAD_FILE whose background plane fails while being written."""
    import sciimg.pipeline.astro_steps as astro_steps

    real = astro_steps.calibrate

    def calibrate(*args, source=None, **kwargs):
        out = real(*args, source=source, **kwargs)
        if source and source.endswith(BAD_FILE):
            out["background"] = out["background"].map_blocks(
                _disk_full, dtype=np.float32
            )
        return out

    monkeypatch.setattr(astro_steps, "calibrate", calibrate)
