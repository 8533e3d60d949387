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
def phantom():
    from sciimg.synth import make_neuro_phantom, multishell_gtab

    gtab = multishell_gtab(directions=6, b0_every=6, seed=1)
    return make_neuro_phantom((24, 22, 14), gtab=gtab, snr=12, seed=5)


@pytest.fixture(params=["real", "phantom"])
def dataset(request, real_dwi, phantom):
    if request.param == "real":
        return real_dwi
    return phantom.data, phantom.gtab


def chunked(arr, uneven):
    return dask.array.from_array(arr, chunks=(*uneven(arr.shape[:3]), 5))


__all__ = ["chunked", "np"]
