import dask.array as da
import numpy as np
import pytest
from dipy.denoise.nlmeans import nlmeans as dipy_nlmeans
from dipy.denoise.noise_estimate import estimate_sigma as dipy_sigma
from dipy.segment.mask import median_otsu

from sciimg.neuro import b0_indices, estimate_sigma, nlmeans
from tests.neuro.conftest import chunked


@pytest.mark.parametrize("n_coils", [0, 4])
def test_sigma_equals_dipy(dataset, uneven, n_coils):
    data, _ = dataset
    got = estimate_sigma(chunked(data, uneven), n_coils=n_coils).compute()
    np.testing.assert_allclose(got, dipy_sigma(data, N=n_coils), rtol=1e-6)


@pytest.mark.parametrize(
    ("method", "patch", "block"), [("classic", 1, 5), ("blockwise", 1, 2)]
)
def test_nlmeans_equals_dipy(dataset, uneven, method, patch, block):
    data, gtab = dataset
    data = data[..., :9]  # enough volumes to cross chunks, few enough to be quick
    _, mask = median_otsu(
        data, vol_idx=b0_indices(gtab.bvals[:9]), median_radius=2, numpass=1
    )
    sigma = dipy_sigma(data)
    got = nlmeans(
        chunked(data, uneven),
        estimate_sigma(chunked(data, uneven)),
        mask=da.from_array(mask, chunks=3),
        method=method,
        patch_radius=patch,
        block_radius=block,
    ).compute()
    # dipy's blockwise method is only deterministic single-threaded.
    ref = dipy_nlmeans(
        data,
        sigma,
        mask=mask,
        patch_radius=patch,
        block_radius=block,
        rician=True,
        method=method,
        num_threads=1,
    )
    assert got.dtype == data.dtype
    scale = np.abs(ref).max()
    assert np.abs(got - ref).max() <= 1e-4 * scale
    assert np.all(got[~mask] == 0)


def test_nlmeans_scalar_sigma_gaussian(real_dwi):
    data, _ = real_dwi
    data = data[..., :3]
    got = nlmeans(da.from_array(data), 40.0, rician=False, block_radius=2).compute()
    ref = dipy_nlmeans(
        data, 40.0, rician=False, block_radius=2, method="classic", num_threads=1
    )
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-3)


def test_denoising_reduces_error(phantom):
    from sciimg.synth import make_neuro_phantom

    clean = make_neuro_phantom(phantom.labels.shape, gtab=phantom.gtab, snr=1e9, seed=5)
    head = phantom.labels > 0
    noisy = da.from_array(phantom.data, chunks=(10, 9, 6, 4))
    out = nlmeans(noisy, phantom.sigma, mask=da.from_array(head)).compute()
    err_before = np.sqrt(np.mean((phantom.data[head] - clean.data[head]) ** 2))
    err_after = np.sqrt(np.mean((out[head] - clean.data[head]) ** 2))
    assert err_after < 0.9 * err_before  # ~20% at this size and SNR


def test_bad_arguments():
    with pytest.raises(ValueError, match="method"):
        nlmeans(da.zeros((4, 4, 4, 2)), 1.0, method="fast")
    with pytest.raises(ValueError, match="one value per volume"):
        nlmeans(da.zeros((4, 4, 4, 2)), da.ones(3))
    with pytest.raises(ValueError, match="x, y, z, volume"):
        estimate_sigma(da.zeros((4, 4, 4)))
