"""The sky map: patches tile the sky, line up, and are found from footprints."""

from __future__ import annotations

import numpy as np

from sciimg.astro import make_skymap
from tests.astro.conftest import tan_wcs


def _exposures():
    return [
        (tan_wcs((100, 150), rotation=r, shift=s), (100, 150))
        for r, s in [(0.0, (0, 0)), (0.5, (60, 30)), (-0.3, (-40, 70))]
    ]


def test_patches_share_one_grid_and_inner_regions_tile():
    sm = make_skymap(_exposures(), patch_size=64, border=8)
    sky = sm.wcs()
    for patch in sm.patches():
        w = patch.wcs
        # Patch pixel (0, 0) is sky-map pixel `origin`.
        a = w.pixel_to_world_values(0.0, 0.0)
        b = sky.pixel_to_world_values(*map(float, patch.origin[::-1]))
        np.testing.assert_allclose(a, b, atol=1e-12)
        y0, y1, x0, x1 = patch.inner
        assert (x1 - x0, y1 - y0) == (64, 64)
    # Every sky-map pixel lies in the inner region of exactly one patch.
    ys, xs = np.mgrid[: sm.size[0] * 64, : sm.size[1] * 64]
    count = np.zeros(xs.shape, int)
    for patch in sm.patches():
        count += patch.is_inner(ys - patch.origin[0], xs - patch.origin[1])
    assert (count == 1).all()


def test_patches_for_matches_brute_force():
    exposures = _exposures()
    sm = make_skymap(exposures, patch_size=64, border=8, pixel_scale=0.5)
    for w, shape in exposures:
        found = {p.id for p in sm.patches_for(w, shape)}
        ys, xs = np.mgrid[0 : shape[0] : 4, 0 : shape[1] : 4]
        world = w.pixel_to_world_values(xs.ravel(), ys.ravel())
        brute = set()
        for patch in sm.patches():
            px, py = patch.wcs.world_to_pixel_values(*world)
            inside = (
                (px > -0.5)
                & (px < patch.shape[1] - 0.5)
                & (py > -0.5)
                & (py < patch.shape[0] - 0.5)
            )
            if inside.any():
                brute.add(patch.id)
        assert brute <= found and len(found - brute) <= 2


def test_footprints_fit_inside_the_sky_map():
    exposures = _exposures()
    sm = make_skymap(exposures, patch_size=50, border=5)
    for w, shape in exposures:
        y0, y1, x0, x1 = sm.pixel_box(w, shape)
        assert x0 >= -0.5 and y0 >= -0.5
        assert y1 <= sm.size[0] * 50 and x1 <= sm.size[1] * 50
