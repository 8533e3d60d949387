import json

import dask.array as da
import numpy as np
import pytest

from sciimg.errors import InputError
from sciimg.io import (
    Image,
    image_names,
    open_dwi,
    open_image,
    open_zarr,
    write_nifti,
    write_zarr,
)


def test_nifti_zarr_nifti_is_exact(tmp_path, small_64d, example4d):
    dwi = open_dwi(small_64d[0])
    ex = open_image(example4d)
    store = write_zarr(tmp_path / "s.zarr", {"dwi": dwi, "ex": ex})
    assert sorted(image_names(store)) == ["dwi", "ex"]
    for name, src in (("dwi", dwi), ("ex", ex)):
        back = open_zarr(store, name)
        assert back.dims == src.dims and back.dtype == src.dtype
        np.testing.assert_array_equal(back.data.compute(), src.data.compute())
        np.testing.assert_array_equal(back.affine, src.affine)
        nii = open_image(write_nifti(back, tmp_path / f"{name}.nii.gz"))
        np.testing.assert_array_equal(nii.data.compute(), src.data.compute())
        np.testing.assert_array_equal(nii.affine, src.affine)
    back = open_zarr(store, "dwi")
    np.testing.assert_array_equal(back.gtab.bvals, dwi.gtab.bvals)
    np.testing.assert_allclose(back.gtab.bvecs, dwi.gtab.bvecs)


def test_ngff_attrs(tmp_path, small_64d):
    dwi = open_dwi(small_64d[0])
    store = write_zarr(tmp_path / "s.zarr", {"dwi": dwi})
    meta = json.loads((store / "dwi" / "zarr.json").read_text())["attributes"]
    ms = meta["ome"]["multiscales"][0]
    assert meta["ome"]["version"] == "0.5"
    assert [a["name"] for a in ms["axes"]] == ["volume", "z", "y", "x"]
    assert [a.get("type") for a in ms["axes"]] == ["channel", "space", "space", "space"]
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == [
        1.0,
        2.0,
        2.0,
        2.0,
    ]
    arr = json.loads((store / "dwi" / "0" / "zarr.json").read_text())
    assert arr["shape"] == [65, 10, 10, 10]  # stored in NGFF (reversed) order
    assert arr["dimension_names"] == ["volume", "z", "y", "x"]


def test_chunks_from_budget(tmp_path):
    img = Image(
        da.zeros((64, 64, 64), dtype="f4", chunks=16),
        np.eye(4),
        ("x", "y", "z"),
        (1.0, 1.0, 1.0),
    )
    store = write_zarr(tmp_path / "s.zarr", {"z": img}, budget="64KiB")
    back = open_zarr(store, "z")
    assert max(back.data.chunksize) < 64
    assert np.prod(back.data.chunksize) * 4 <= 64 * 1024


def _boom(block):
    raise RuntimeError("disk full")


def test_failed_write_leaves_nothing(tmp_path):
    bad = da.zeros((8, 8, 8), chunks=4).map_blocks(_boom, dtype=float)
    img = Image(bad, np.eye(4), ("x", "y", "z"), (1.0, 1.0, 1.0))
    with pytest.raises(RuntimeError, match="disk full"):
        write_zarr(tmp_path / "s.zarr", {"bad": img})
    assert list(tmp_path.iterdir()) == []


def test_store_needs_image_name(tmp_path, small_64d):
    store = write_zarr(tmp_path / "s.zarr", {"dwi": open_dwi(small_64d[0])})
    with pytest.raises(InputError, match="name one"):
        open_zarr(store)
    with pytest.raises(InputError, match="no image 'fa'"):
        open_zarr(store, "fa")
    assert open_image(store / "dwi").shape == (10, 10, 10, 65)
