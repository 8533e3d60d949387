import os
import shutil

import dask.array as da
import nibabel as nib
import numpy as np
import pytest

from sciimg.errors import InputError
from sciimg.io import list_readers, open_image, open_nifti, write_nifti


def test_opens_real_nifti_like_nibabel(example4d):
    img = open_image(example4d)
    ref = nib.load(example4d)
    assert img.shape == ref.shape
    assert img.dims == ("x", "y", "z", "volume")
    np.testing.assert_array_equal(img.affine, ref.affine)
    assert img.zooms == tuple(float(z) for z in ref.header.get_zooms()[:3])
    np.testing.assert_array_equal(img.data.compute(), np.asarray(ref.dataobj))


def test_open_reads_nothing(tmp_path, example4d):
    # Opening reads only the header: once the file is gone, only voxel reads fail.
    path = tmp_path / "x.nii.gz"
    shutil.copy(example4d, path)
    img = open_nifti(path)
    path.unlink()
    with pytest.raises(InputError, match=r"x\.nii\.gz"):
        img.data[..., 0].compute()


def test_chunks_follow_budget(example4d):
    img = open_nifti(example4d, chunk_memory="1MiB")  # one volume is 576 KiB of int16
    assert img.data.numblocks == (1, 1, 1, 2)  # whole volumes, one per chunk
    tiny = open_nifti(example4d, chunk_memory="100KiB")  # not even one volume fits
    assert np.prod(tiny.data.chunksize) * 2 <= 100 * 1024 < 576 * 1024
    small = open_nifti(example4d, chunk_memory="2MiB")
    assert small.data.numblocks == (1, 1, 1, 1)
    np.testing.assert_array_equal(img.data.compute(), small.data.compute())
    np.testing.assert_array_equal(tiny.data.compute(), small.data.compute())


def test_gradients_found_beside_file(small_64d):
    data, _bval, _bvec = small_64d
    img = open_nifti(data)
    assert img.gtab is not None and len(img.gtab.bvals) == 65


def test_magic_bytes_beat_suffix(tmp_path, example4d):
    odd = tmp_path / "volume.dat"
    odd.write_bytes(nib.load(example4d).to_bytes())
    assert open_image(odd).shape == (128, 96, 24, 2)


def test_unknown_file_lists_readers(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    with pytest.raises(InputError) as info:
        open_image(bad)
    msg = str(info.value)
    assert "notes.txt" in msg and "nifti" in msg and "zarr" in msg
    assert set(list_readers()) >= {"nifti", "zarr"}


def test_write_nifti_round_trip(tmp_path, example4d):
    img = open_image(example4d)
    out = write_nifti(img, tmp_path / "copy.nii.gz")
    back = open_image(out)
    np.testing.assert_array_equal(back.data.compute(), img.data.compute())
    np.testing.assert_array_equal(back.affine, img.affine)
    assert back.dtype == img.dtype
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]


def test_scaled_nifti_gives_float(tmp_path):
    arr = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    nii = nib.Nifti1Image(arr, np.eye(4))
    nii.header.set_slope_inter(0.5, 1.0)
    path = tmp_path / "scaled.nii"
    nib.save(nii, path)
    img = open_image(path)
    assert img.dtype.kind == "f"
    np.testing.assert_allclose(img.data.compute(), arr * 0.5 + 1.0)
    assert isinstance(img.data, da.Array)
