import json
from pathlib import Path

import astropy
import dask
import dask.array as da
import numpy as np
import pytest
import zarr

from sciimg.errors import InputError
from sciimg.io import (
    Image,
    ZarrStoreWriter,
    ensure_collection,
    image_names,
    open_dwi,
    open_fits,
    open_image,
    open_zarr,
    store_attrs,
    update_series,
    write_nifti,
    write_zarr,
)


@pytest.fixture(autouse=True)
def _in_process():
    # The readers of other libraries (ngff-zarr's arrays) cannot be pickled to a
    # distributed cluster that another test left as the default.
    with dask.config.set(scheduler="synchronous"):
        yield


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
    store = write_zarr(tmp_path / "s.zarr", {"z": img}, chunk_memory="64KiB")
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


# NGFF 0.5: every image group must be accepted by ngff-zarr (its bundled JSON
# schemas plus its structural rules) and read by ome-zarr, the reader behind
# napari's OME-Zarr plugin.

DSS = Path(astropy.__file__).parent / "wcs/tests/data/dss.14.29.56-62.41.05.fits.gz"
SPACE = ("x", "y", "z")


def _mri_affine():
    """An oblique scanner affine: voxel sizes, a flip, a small rotation, an origin."""
    affine = np.diag([-2.0, 2.0, 2.5, 1.0])
    affine[0, 1] = 0.1
    affine[:3, 3] = [90.5, -126.25, -72.0]
    return affine


def _image(kind):
    rng = np.random.default_rng(7)
    shape = {"3d": (6, 5, 4), "4d": (6, 5, 4, 7), "evecs": (6, 5, 4, 3, 3)}
    if kind == "sky":
        return open_fits(DSS)  # real: a DSS plate with its WCS
    if kind == "mask":
        data = da.from_array(rng.random(shape["3d"]) > 0.5, chunks=(3, 5, 2))
        return Image(data, _mri_affine(), SPACE, (2.0, 2.0, 2.5))
    dims = {"3d": SPACE, "4d": (*SPACE, "volume")}
    dims["evecs"] = (*SPACE, "component", "eigenvector")
    # The eigenvector axes in pieces, as no tensor fit would leave them.
    chunks = (3, 5, 4, 1, 3) if kind == "evecs" else -1
    data = da.from_array(rng.random(shape[kind]).astype("f4"), chunks=chunks)
    return Image(data, _mri_affine(), dims[kind], (2.0, 2.0, 2.5))


def _ngff_order(voxels: np.ndarray, n_space: int, dims) -> np.ndarray:
    """What an NGFF reader must see: NIfTI-order axes reversed (sky images are
    already in array order), extra axes in one."""
    stored = voxels.transpose() if dims[0] == "x" else voxels
    extra = stored.shape[: stored.ndim - n_space]
    if len(extra) > 1:
        return stored.reshape((-1, *stored.shape[len(extra) :]))
    return stored


@pytest.mark.parametrize("kind", ["3d", "4d", "evecs", "sky", "mask"])
def test_every_kind_of_image_is_ngff(tmp_path, kind):
    import ngff_zarr
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    img = _image(kind)
    store = write_zarr(tmp_path / "s.zarr", {kind: img})
    voxels = img.data.compute()
    n_space = len([d for d in img.dims if d in SPACE])
    expected = _ngff_order(voxels, n_space, img.dims)

    attrs = json.loads((store / kind / "zarr.json").read_text())["attributes"]
    ngff_zarr.validate(attrs, version="0.5", model="image")
    image = ngff_zarr.from_ome_zarr(str(store / kind), validate=True).images[0]
    np.testing.assert_array_equal(np.asarray(image.data), expected)

    nodes = list(Reader(parse_url(str(store / kind)))())
    assert len(nodes) == 1
    seen = nodes[0].data[0].compute()
    assert seen.dtype == voxels.dtype
    np.testing.assert_array_equal(seen, expected)

    back = open_zarr(store, kind)
    assert back.dims == img.dims and back.dtype == img.dtype
    assert back.shape == img.shape
    np.testing.assert_array_equal(back.data.compute(), voxels)
    np.testing.assert_array_equal(back.affine, img.affine)
    assert back.zooms == img.zooms

    # The first voxel's centre, in the axis unit: sky affines are in degrees.
    factor = 3600.0 if kind == "sky" else 1.0
    assert image.axes_units["x"] == ("arcsecond" if kind == "sky" else "millimeter")
    for axis, offset in image.translation.items():
        if axis in SPACE:
            k = SPACE.index(axis)
            assert offset == img.affine[k, 3] * factor
            assert image.scale[axis] == img.zooms[k]
        else:
            assert offset == 0.0 and image.scale[axis] == 1.0
    assert list(image.translation) == list(image.dims)  # after scale, every axis


def test_merged_axes_stay_whole_and_cheap(tmp_path):
    data = da.zeros((40, 40, 40, 3, 3), dtype="f4", chunks=(20, 20, 20, 3, 1))
    img = Image(data, np.eye(4), (*SPACE, "component", "eigenvector"), (1, 1, 1))
    store = write_zarr(tmp_path / "s.zarr", {"evecs": img}, chunk_memory="64KiB")
    stored = json.loads((store / "evecs" / "0" / "zarr.json").read_text())
    assert stored["shape"] == [9, 40, 40, 40]
    assert stored["dimension_names"] == ["eigenvector_component", "z", "y", "x"]
    chunk = stored["chunk_grid"]["configuration"]["chunk_shape"]
    assert chunk[0] == 9 and np.prod(chunk) * 4 <= 64 * 1024
    back = open_zarr(store, "evecs").data
    assert back.chunksize[3:] == (3, 3)
    blocks = int(np.prod([len(c) for c in back.chunks]))
    assert blocks > 1
    # Splitting the merged axis is one task per block, not a rechunk.
    layers = back.__dask_graph__().layers
    assert not any("rechunk" in name for name in layers)
    assert all(len(layer) <= blocks for layer in layers.values())
    # Chunks asked of the writer cannot split it either.
    writer = ZarrStoreWriter(tmp_path / "t.zarr")
    voxels, target = writer.add("evecs", img, chunks=(3, 20, 20, 20))
    assert voxels.chunks[0] == (9,) and target.chunks == (9, 20, 20, 20)
    writer.abort()


def test_store_is_a_collection_of_its_images(tmp_path):
    import ngff_zarr

    three = _image("3d")
    line = Image(da.arange(5.0), np.eye(4), ("x",), (1.0,))  # NGFF has no 1-D
    store = write_zarr(tmp_path / "s.zarr", {"b": three, "a": three, "line": line})
    root = json.loads((store / "zarr.json").read_text())["attributes"]
    assert root["ome"] == {"version": "0.5", "bioformats2raw.layout": 3}
    ngff_zarr.validate(root, version="0.5", model="bf2raw")
    listing = json.loads((store / "OME" / "zarr.json").read_text())["attributes"]
    ngff_zarr.validate(listing, version="0.5", model="ome")
    assert listing["ome"]["series"] == ["b", "a"]
    assert sorted(image_names(store)) == ["a", "b", "line"]
    assert "ome" not in json.loads((store / "line" / "zarr.json").read_text())
    np.testing.assert_array_equal(open_zarr(store, "line").data.compute(), range(5))
    with pytest.raises(ValueError, match="'OME' is where"):
        write_zarr(tmp_path / "t.zarr", {"OME": three})


def test_collection_of_stores_lists_their_images(tmp_path):
    import ngff_zarr

    root = ensure_collection(tmp_path / "calexp.zarr", {"pipeline": "astro"})
    write_zarr(root / "e2", {"image": _image("3d"), "mask": _image("mask")})
    write_zarr(root / "e1", {"image": _image("3d")})
    assert update_series(root) == ["e1/image", "e2/image", "e2/mask"]
    attrs = json.loads((root / "zarr.json").read_text())["attributes"]
    assert attrs["sciimg"] == {"pipeline": "astro", "collection": True}
    ngff_zarr.validate(attrs, version="0.5", model="bf2raw")
    listing = json.loads((root / "OME" / "zarr.json").read_text())["attributes"]
    ngff_zarr.validate(listing, version="0.5", model="ome")
    image = ngff_zarr.from_ome_zarr(str(root / "e2" / "mask"), validate=True)
    assert image.images[0].data.dtype == bool
    ensure_collection(root, {"run": 2})  # reopened: attrs merge, listing kept
    assert store_attrs(root) == {"pipeline": "astro", "run": 2, "collection": True}
    after = json.loads((root / "OME" / "zarr.json").read_text())["attributes"]
    assert after == listing


def test_stores_written_before_ngff_layout_still_open(tmp_path):
    import zarr

    # As stores were written before the stored layout was recorded: axes
    # reversed, no shape, no "ome".
    voxels = np.arange(120, dtype="i2").reshape(2, 3, 4, 5)
    group = zarr.open_group(tmp_path / "old.zarr", mode="w", zarr_format=3)
    image = group.create_group("dwi")
    image.attrs["sciimg"] = {
        "dims": ["x", "y", "z", "volume"],
        "affine": np.eye(4).tolist(),
        "zooms": [1.0, 1.0, 1.0],
        "source": None,
        "attrs": {},
    }
    image.create_array("0", data=voxels.transpose())
    back = open_zarr(tmp_path / "old.zarr", "dwi")
    assert back.dims == ("x", "y", "z", "volume")
    np.testing.assert_array_equal(back.data.compute(), voxels)


def test_writes_are_named_after_their_target(tmp_path):
    """Two stores' writes of the same voxels are different tasks; the same
    store's are the same."""
    from dask.base import tokenize

    from sciimg.io._ngff import StoredOrder

    arrays = [
        zarr.create_array(tmp_path / f"{k}.zarr", shape=(4, 3), dtype="f4")
        for k in "ab"
    ]
    a, b = (StoredOrder(x, [1, 0]) for x in arrays)
    assert tokenize(a) == tokenize(StoredOrder(arrays[0], [1, 0]))
    assert tokenize(a) != tokenize(b)
    voxels = da.arange(12.0, dtype="f4").reshape(3, 4)
    da.store([voxels, voxels], [a, b], lock=False)
    for x in arrays:
        np.testing.assert_array_equal(x[...], voxels.compute().T)
