"""Every bad input gets one line that names the file and says what is wrong."""

import gzip
import shutil

import nibabel as nib
import numpy as np
import pytest
from astropy.io import fits

from sciimg.errors import InputError
from sciimg.io import open_dwi, open_exposure, read_gradients


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


def _bvals_in_ms(tmp_path):
    # 1-3 ms/µm² written where s/mm² (1000-3000) belong.
    p = _dwi(tmp_path, _good())
    bvals = np.r_[0, np.tile([1.0, 2.0, 3.0], 2)]
    np.savetxt(tmp_path / "sub-01_dwi.bval", bvals[None], fmt="%g")
    return p


def _bvecs_not_unit(tmp_path):
    p = _dwi(tmp_path, _good())
    bvecs = np.r_[[[0, 0, 0]], np.tile([[1.0, 0, 0]], (6, 1))]
    bvecs[4] = [0.5, 0, 0]
    np.savetxt(tmp_path / "sub-01_dwi.bvec", bvecs.T)
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
    (
        _bvals_in_ms,
        "sub-01_dwi.bval: largest b-value is 3, below 50: the values look like "
        "ms/µm², but this file must give s/mm²",
    ),
    (
        _bvecs_not_unit,
        r"sub-01_dwi.bvec: the b-vector of volume 4 \(counting from 0; b=1000\) has "
        r"length 0.5, not 1 ± 0.01; vectors of diffusion-weighted volumes",
    ),
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


def test_real_gradient_tables_pass(small_64d):
    # dipy's real scan: b ≈ 1000 with vectors normalised to 1e-16, and a b0.
    _, bval, bvec = small_64d
    assert read_gradients(bval, bvec).bvals.max() > 1000


def test_b0_vectors_may_be_zero_or_nan(tmp_path):
    np.savetxt(tmp_path / "x.bval", [[0, 5, 1000, 2000]], fmt="%g")
    vectors = [[np.nan, 0, 1, 0.6], [np.nan, 0, 0, 0.8], [np.nan, 0, 0, 0]]
    np.savetxt(tmp_path / "x.bvec", vectors)
    gtab = read_gradients(tmp_path / "x.bval", tmp_path / "x.bvec")
    assert gtab.bvals.tolist() == [0, 0, 1000, 2000]  # dipy's b0 for a zero vector


def test_good_file_passes(tmp_path):
    path = _dwi(tmp_path, _good())
    assert open_dwi(path).data.compute().shape == (6, 6, 4, 7)
    shutil.rmtree(tmp_path)


# ---- FITS exposures ---------------------------------------------------------------


def _exposure(tmp_path, name="visit-1_ccd-2.fits", **kwargs):
    from tests.io.fits_files import write_exposure

    path = tmp_path / name
    write_exposure(path, **kwargs)
    return path


def _fits_truncated(tmp_path):
    p = _exposure(tmp_path)
    p.write_bytes(p.read_bytes()[:-3000])  # into the VARIANCE pixels
    return p


def _fits_header_cut(tmp_path):
    p = _exposure(tmp_path)
    with fits.open(p) as hdul:
        start = hdul.fileinfo(3)["hdrLoc"]
    p.write_bytes(p.read_bytes()[: start + 400])  # VARIANCE's header, cut off
    return p


def _fits_gz_truncated(tmp_path):
    p = _exposure(tmp_path)
    gz = p.with_name(p.name + ".gz")
    raw = gzip.compress(p.read_bytes())
    gz.write_bytes(raw[: len(raw) * 2 // 3])
    return gz


def _fits_no_variance(tmp_path):
    return _exposure(tmp_path, planes=("IMAGE", "MASK"))


def _fits_no_wcs(tmp_path):
    return _exposure(tmp_path, with_wcs=False)


def _fits_not_fits(tmp_path):
    p = tmp_path / "visit-1_ccd-2.fits"
    p.write_text("SIMPLE is not what this file is\n" * 100)
    return p


def _fits_empty(tmp_path):
    p = tmp_path / "visit-1_ccd-2.fits"
    p.write_bytes(b"")
    return p


def _fits_shapes_differ(tmp_path):
    return _exposure(tmp_path, shapes={"VARIANCE": (30, 40)})


def _fits_cube(tmp_path):
    return _exposure(tmp_path, shapes={"IMAGE": (2, 30, 41)})


def _fits_float_mask(tmp_path):
    return _exposure(tmp_path, mask_dtype=">f4")


FITS_CASES = [
    (_fits_truncated, r"is truncated: HDU 3 \(VARIANCE\) needs \d+ bytes"),
    (_fits_header_cut, "is truncated: the header of HDU 3 is cut off"),
    (_fits_gz_truncated, "truncated or damaged"),
    (_fits_no_variance, r"has no VARIANCE extension \(extensions: IMAGE, MASK\)"),
    (_fits_no_wcs, r"HDU 1 \(IMAGE\) has no celestial WCS"),
    (_fits_not_fits, "is not a FITS file"),
    (_fits_empty, "is not a FITS file"),
    (_fits_shapes_differ, r"planes of different shapes: .*VARIANCE\) 30×40"),
    (_fits_cube, r"HDU 1 \(IMAGE\) is 3-D; an exposure plane must be 2-D"),
    (_fits_float_mask, "holds float32 pixels; a bit mask must be integers"),
]


@pytest.mark.parametrize(
    ("make", "message"), FITS_CASES, ids=[c[0].__name__ for c in FITS_CASES]
)
def test_bad_exposure_one_line_error(tmp_path, make, message):
    import re

    path = make(tmp_path)
    with pytest.raises(InputError) as info:
        open_exposure(path).image.compute()
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}: ")
    assert re.search(message, msg), msg


def test_good_exposure_passes(tmp_path):
    path = _exposure(tmp_path)
    assert open_exposure(path).image.compute().shape == (30, 41)
