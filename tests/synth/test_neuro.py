"""The diffusion phantom's construction."""

import numpy as np

from sciimg.synth import make_neuro_phantom


def test_the_phantom_does_not_depend_on_its_slabs(monkeypatch):
    # The noise is made slab by slab (an HCP-size series must not need float64
    # copies of itself); the slabs must not change the phantom.
    import sciimg.synth._neuro as neuro

    whole = make_neuro_phantom((12, 10, 8)).data
    monkeypatch.setattr(neuro, "_SLAB_VALUES", 500)
    np.testing.assert_array_equal(make_neuro_phantom((12, 10, 8)).data, whole)
