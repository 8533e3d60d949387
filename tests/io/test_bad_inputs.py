"""Every bad input gets one line that names the file and says what is wrong."""

import gzip
import shutil

import nibabel as nib
import numpy as np
import pytest

from sciimg.errors import InputError
from sciimg.io import open_dwi


def _dwi(tmp_path, data, nvol_grad=None, name="sub-01_dwi.nii.gz"):
    path = tmp_path / name
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    n = nvol_grad if nvol_grad is not None else (data.shape[3] if data.ndim == 4 else 1)
    bvals = np.r_[0, np.full(n - 1, 1000.0)]
    bvecs = np.r_[[[0, 0, 0]], np.tile([[1.0, 0, 0]], (n - 1, 1))]
    stem = name.split(".")[0]
    np.savetxt(tmp_path / f"{stem}.bval", bvals[None], fmt="%g")
    np.savetxt(tmp_path / f"{stem}.bvec", bvecs.T)
    return path


def _good():
    return np.random.default_rng(0).uniform(50, 100, (6, 6, 4, 7)).astype("f4")


def _not_nifti(tmp_path):
    p = tmp_path / "sub-01_dwi.nii.gz"
    with gzip.open(p, "wb") as f:
        f.write(b"this is not an image" * 40)
    return p


def _truncated_nii(tmp_path):
    p = _dwi(tmp_path, _good(), name="sub-01_dwi.nii")
    p.write_bytes(p.read_bytes()[:-500])
    return p


def _truncated_gz(tmp_path):
    p = _dwi(tmp_path, _good())
    raw = p.read_bytes()
    p.write_bytes(raw[: len(raw) // 2])
    return p


def _three_d(tmp_path):
    return _dwi(tmp_path, _good()[..., 0])


def _grad_mismatch(tmp_path):
    return _dwi(tmp_path, _good(), nvol_grad=5)


def _nans(tmp_path):
    data = _good()
    data[2, 2, 2, 3] = np.nan
    return _dwi(tmp_path, data)


def _no_gradients(tmp_path):
    p = _dwi(tmp_path, _good())
    (tmp_path / "sub-01_dwi.bval").unlink()
    return p


def _empty_file(tmp_path):
    p = tmp_path / "sub-01_dwi.nii.gz"
    p.write_bytes(b"")
    return p


CASES = [
    (_not_nifti, "not a readable NIfTI|no reader"),
    (_truncated_nii, "truncated"),
    (_truncated_gz, "truncated or damaged"),
    (_three_d, "is 3-D"),
    (_grad_mismatch, "lists 5 b-values but sub-01_dwi.nii.gz has 7 volumes"),
    (_nans, "NaN"),
    (_no_gradients, "no gradient table"),
    (_empty_file, "not a readable NIfTI|no reader"),
]


@pytest.mark.parametrize(("make", "message"), CASES, ids=[c[0].__name__ for c in CASES])
def test_bad_input_one_line_error(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(InputError) as info:
        # Voxel problems surface when the voxels are read, as in a real run.
        open_dwi(path).data.compute()
    msg = str(info.value)
    assert "\n" not in msg
    assert path.name in msg or "sub-01_dwi" in msg
    import re

    assert re.search(message, msg), msg


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        open_dwi(tmp_path / "nope.nii.gz")


def test_good_file_passes(tmp_path):
    path = _dwi(tmp_path, _good())
    assert open_dwi(path).data.compute().shape == (6, 6, 4, 7)
    shutil.rmtree(tmp_path)
