import dask.array as da
import numpy as np
import pytest
from dipy.segment.mask import median_otsu

from sciimg.errors import InputError
from sciimg.neuro import b0_indices, mean_b0, median_otsu_mask
from tests.neuro.conftest import chunked


def test_b0_indices_threshold():
    assert b0_indices([0, 5, 10, 11, 1000]).tolist() == [0, 1, 2]
    assert b0_indices([0, 5, 10, 1000], threshold=0).tolist() == [0]
    with pytest.raises(ValueError, match="no b0 volume"):
        b0_indices([1000, 2000])


@pytest.mark.parametrize(
    ("radius", "numpass", "dilate"), [(4, 2, 1), (2, 1, None), (1, 3, 2)]
)
def test_mask_equals_median_otsu(dataset, uneven, radius, numpass, dilate):
    data, gtab = dataset
    idx = b0_indices(gtab)
    b0 = mean_b0(chunked(data, uneven), gtab)
    np.testing.assert_allclose(b0.compute(), data[..., idx].mean(axis=3), rtol=1e-6)
    mask = median_otsu_mask(b0, median_radius=radius, numpass=numpass, dilate=dilate)
    _, ref = median_otsu(
        data, vol_idx=idx, median_radius=radius, numpass=numpass, dilate=dilate
    )
    np.testing.assert_array_equal(mask.compute(), ref)


def test_mask_covers_head_not_background(phantom):
    b0 = mean_b0(da.from_array(phantom.data, chunks=(7, 7, 5, 4)), phantom.gtab)
    # Radius scaled to the phantom's ~22-voxel head (the paper's 4 suits HCP's ~110).
    mask = median_otsu_mask(b0, median_radius=2).compute()
    head, background = phantom.labels > 0, phantom.labels == 0
    assert mask[head].mean() > 0.95
    assert mask[background].mean() < 0.10


def test_mask_rejects_4d():
    with pytest.raises(ValueError, match="3-D"):
        median_otsu_mask(da.zeros((4, 4, 4, 2)))


# dipy's Otsu divides by an empty class weight on a flat histogram.
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_constant_volume_gives_dipys_mask_when_asked():
    # A flat image has no threshold to find; dipy's answer is still what we give
    # when the signal is not required.
    vol = np.full((8, 8, 8), 5.0)
    _, ref = median_otsu(vol, median_radius=1, numpass=1)
    out = median_otsu_mask(
        da.from_array(vol, chunks=3), median_radius=1, numpass=1, require_signal=False
    )
    np.testing.assert_array_equal(out.compute(), ref)


@pytest.mark.parametrize(
    ("value", "message"),
    [(0.0, "its b0 volumes are all zero"), (5.0, "its b0 volumes are 5 in every")],
)
def test_constant_volume_is_an_error_naming_the_file(value, message):
    vol = da.full((8, 8, 8), value, chunks=3)
    mask = median_otsu_mask(vol, median_radius=1, numpass=1, source="sub-01_dwi.nii")
    with pytest.raises(InputError, match=f"^sub-01_dwi.nii: has no signal: {message}"):
        mask.compute()


def test_no_head_above_background_is_an_error():
    # One hot voxel in an empty volume: the median filter removes it, and the mask
    # holds nothing brighter than the background.
    vol = np.zeros((10, 10, 10))
    vol[5, 5, 5] = 100.0
    mask = median_otsu_mask(da.from_array(vol), median_radius=1, numpass=1, source="f")
    with pytest.raises(InputError, match=r"^f: no voxel is above background inside"):
        mask.compute()


def test_real_heads_pass(real_dwi, example4d):
    import nibabel as nib

    data, gtab = real_dwi
    b0 = mean_b0(da.from_array(data), gtab)
    assert median_otsu_mask(b0).compute().any()
    volume = np.asarray(nib.load(example4d).dataobj[..., 0], dtype=np.float32)
    assert median_otsu_mask(da.from_array(volume)).compute().any()
