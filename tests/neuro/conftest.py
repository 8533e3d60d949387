import dask
import numpy as np
import pytest

from sciimg.io import open_dwi


@pytest.fixture(autouse=True)
def _threads():
    # The step functions are checked with the threaded scheduler; the runner tests
    # run them on a real cluster. Rechunking by tasks, not p2p, which dask picks
    # when another test's distributed client is still the default.
    with dask.config.set({"scheduler": "threads", "array.rechunk.method": "tasks"}):
        yield


@pytest.fixture(scope="module")
def real_dwi(small_64d):
    """dipy's small_64D as (numpy data, gtab)."""
    dwi = open_dwi(small_64d[0])
    return dwi.data.compute(), dwi.gtab


@pytest.fixture(scope="module")
def real_dwi_101(small_101d):
    """dipy's small_101D as (numpy data, gtab); its b0 volumes are stored as
    b = 15, which counts as b0 by dipy's threshold (50), not by sciimg's (10):
    they are taken as 0 here."""
    from sciimg.io import make_gtab

    dwi = open_dwi(small_101d[0])
    bvals = np.where(dwi.gtab.bvals < 50, 0, dwi.gtab.bvals)
    return dwi.data.compute(), make_gtab(bvals, dwi.gtab.bvecs)


@pytest.fixture(scope="module")
def phantom():
    from sciimg.synth import make_neuro_phantom, multishell_gtab

    gtab = multishell_gtab(directions=6, b0_every=6, seed=1)
    return make_neuro_phantom((24, 22, 14), gtab=gtab, snr=12, seed=5)


@pytest.fixture(params=["small_64D", "small_101D", "phantom"])
def dataset(request, real_dwi, real_dwi_101, phantom):
    # Each step, with sciimg's fast kernels behind it, against dipy called
    # directly on the same data: two real series and a phantom.
    return {
        "small_64D": real_dwi,
        "small_101D": real_dwi_101,
        "phantom": (phantom.data, phantom.gtab),
    }[request.param]


def chunked(arr, uneven):
    return dask.array.from_array(arr, chunks=(*uneven(arr.shape[:3]), 5))


__all__ = ["chunked", "np"]
