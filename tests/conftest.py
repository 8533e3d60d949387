"""Shared fixtures: real data shipped with dipy/nibabel, phantoms, a Dask cluster."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def small_64d():
    """dipy's bundled real dMRI: 10×10×10×65, b0 + b≈1000 (data, bval, bvec)."""
    from dipy.data import get_fnames

    return tuple(Path(p) for p in get_fnames(name="small_64D"))


@pytest.fixture(scope="session")
def example4d():
    """nibabel's bundled real 4-D NIfTI (int16, 128×96×24×2)."""
    import nibabel.testing

    return Path(nibabel.testing.data_path) / "example4d.nii.gz"


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory):
    """A two-subject BIDS phantom, small enough for seconds-long runs."""
    from sciimg.synth import write_neuro_dataset

    root = tmp_path_factory.mktemp("phantom")
    write_neuro_dataset(
        root, subjects=2, shape=(24, 24, 14), directions=8, seed=3, snr=15
    )
    return root


@pytest.fixture(scope="session")
def client():
    """A real LocalCluster: two single-threaded worker processes."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            memory_limit="3GB",
        ) as cluster,
        Client(cluster) as c,
    ):
        yield c


@pytest.fixture
def uneven():
    """Chunk shapes that cut a volume unevenly, to cross block boundaries."""

    def make(shape):
        return tuple(max(1, (n + 2) // 3) if n > 3 else n for n in shape)

    return make
