import dask.array as da
import numpy as np
import pytest
from dipy.reconst.dti import TensorModel
from dipy.segment.mask import median_otsu

from sciimg.errors import InputError
from sciimg.neuro import DTI_MAPS, b0_indices, fit_dti
from tests.neuro.conftest import chunked


@pytest.mark.parametrize("fit_method", ["WLS", "OLS"])
def test_maps_equal_tensor_model(dataset, uneven, fit_method):
    data, gtab = dataset
    _, mask = median_otsu(data, vol_idx=b0_indices(gtab), median_radius=2, numpass=1)
    maps = fit_dti(
        chunked(data, uneven),
        gtab,
        mask=da.from_array(mask, chunks=4),
        fit_method=fit_method,
        chunk_memory="16KiB",
    )
    assert maps["fa"].npartitions > 1  # the fit really ran on several blocks
    got = dict(zip(DTI_MAPS, da.compute(*maps.values()), strict=True))
    ref = TensorModel(gtab, fit_method=fit_method).fit(data, mask=mask)
    np.testing.assert_allclose(got["fa"], ref.fa, atol=1e-5)
    for name, want in (
        ("md", ref.md),
        ("ad", ref.ad),
        ("rd", ref.rd),
        ("evals", ref.evals),
    ):
        np.testing.assert_allclose(
            got[name], want, rtol=1e-5, atol=1e-6 * np.abs(want).max()
        )
    np.testing.assert_allclose(got["rgb"], ref.color_fa, atol=1e-5)
    # Eigenvectors are defined up to sign: compare |dot products|.
    dots = np.abs(np.sum(got["evecs"] * ref.evecs, axis=-2))[mask]
    np.testing.assert_allclose(dots, 1.0, atol=1e-4)
    assert np.all(got["fa"][~mask] == 0)


def test_shapes_and_dtype(real_dwi):
    data, gtab = real_dwi
    maps = fit_dti(da.from_array(data), gtab)
    assert maps["fa"].shape == (10, 10, 10) and maps["fa"].dtype == np.float32
    assert maps["rgb"].shape == (10, 10, 10, 3)
    assert maps["evecs"].shape == (10, 10, 10, 3, 3)


def test_phantom_ground_truth(phantom):
    from sciimg.synth import make_neuro_phantom

    clean = make_neuro_phantom(phantom.labels.shape, gtab=phantom.gtab, snr=1e9, seed=5)
    maps = fit_dti(da.from_array(clean.data), clean.gtab)
    fa = maps["fa"].compute()
    head = clean.labels > 0
    np.testing.assert_allclose(fa[head], clean.fa[head], atol=2e-3)
    np.testing.assert_allclose(maps["md"].compute()[head], clean.md[head], rtol=2e-2)


def test_gtab_must_match():
    from sciimg.synth import multishell_gtab

    with pytest.raises(ValueError, match="entries"):
        fit_dti(da.zeros((4, 4, 4, 3)), multishell_gtab(directions=6))


def test_a_table_without_enough_directions_is_an_error():
    from dipy.core.gradients import gradient_table

    only_b0 = gradient_table(np.zeros(4), bvecs=np.zeros((4, 3)))
    with pytest.raises(InputError, match=r"^x.nii: cannot give a diffusion tensor"):
        fit_dti(da.zeros((4, 4, 4, 4)), only_b0, source="x.nii")
    one_axis = gradient_table(
        np.r_[0, np.full(6, 1000.0)],
        bvecs=np.r_[[[0, 0, 0]], np.tile([[1.0, 0, 0]], (6, 1))],
    )
    with pytest.raises(InputError, match=r"6 diffusion-weighted .* rank 2 of 7"):
        fit_dti(da.zeros((4, 4, 4, 7)), one_axis)
