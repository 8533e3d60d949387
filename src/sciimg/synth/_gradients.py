"""HCP-like multi-shell gradient schemes."""

from __future__ import annotations

import numpy as np

__all__ = ["multishell_gtab"]


def _directions(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` well-spread unit vectors on a hemisphere (electrostatic repulsion)."""
    from dipy.core.sphere import HemiSphere, disperse_charges

    theta = np.arccos(rng.uniform(0, 1, n))
    phi = rng.uniform(0, 2 * np.pi, n)
    hemi, _ = disperse_charges(HemiSphere(theta=theta, phi=phi), 200)
    return hemi.vertices


def multishell_gtab(
    *, shells=(1000, 2000, 3000), directions: int = 10, b0_every: int = 8, seed: int = 0
):
    """A multi-shell scheme with b0 volumes interleaved, like the HCP's.

    Parameters
    ----------
    shells : sequence of float
        b-values of the weighted shells (s/mm²).
    directions : int
        Directions per shell (90 in the HCP).
    b0_every : int
        One b0 volume before every ``b0_every`` weighted ones (the HCP has 18 b0
        among 288 volumes: about one in 16).
    seed : int
        Seed for the directions.

    Returns
    -------
    dipy GradientTable

    Examples
    --------
    >>> g = multishell_gtab(directions=6, b0_every=6)
    >>> len(g.bvals), int(g.b0s_mask.sum())
    (21, 3)
    """
    from dipy.core.gradients import gradient_table

    rng = np.random.default_rng(seed)
    weighted = [(b, v) for b in shells for v in _directions(directions, rng)]
    order = rng.permutation(len(weighted))  # shells interleaved, as acquired
    bvals, bvecs = [], []
    for n, i in enumerate(order):
        if n % b0_every == 0:
            bvals.append(0.0)
            bvecs.append(np.zeros(3))
        bvals.append(float(weighted[i][0]))
        bvecs.append(weighted[i][1])
    return gradient_table(np.array(bvals), bvecs=np.array(bvecs))
