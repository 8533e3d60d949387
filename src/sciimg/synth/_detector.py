"""The detector: photon and read noise, saturation, bad pixels and cosmic-ray
tracks on a noiseless model of the sky."""

from __future__ import annotations

import numpy as np

from sciimg.io import DEFAULT_MASK_BITS

_CR_ADU = (500.0, 5000.0)  # deposited per pixel by a cosmic ray
_CR_LENGTH = (1, 8)  # pixels


def _cosmic_rays(image, mask, rng, mean: float, saturate: float) -> list[tuple]:
    """Add cosmic-ray tracks to ``image`` (not to the mask); return their pixels.

    Pixels already flagged, hit twice, or that would saturate are skipped, so
    that each truth row is one pixel raised by exactly its ``adu``.
    """
    ny, nx = image.shape
    taken = mask != 0
    rows = []
    for _ in range(rng.poisson(mean)):
        length = int(rng.integers(_CR_LENGTH[0], _CR_LENGTH[1] + 1))
        x0, y0 = rng.uniform(0, nx), rng.uniform(0, ny)
        angle = rng.uniform(0.0, np.pi)
        t = np.linspace(0.0, length - 1, 4 * length)  # steps finer than a pixel
        px = np.rint(x0 + t * np.cos(angle)).astype(np.int64)
        py = np.rint(y0 + t * np.sin(angle)).astype(np.int64)
        _, first = np.unique(np.stack([px, py], 1), axis=0, return_index=True)
        first = np.sort(first)  # each pixel once, in order along the track
        deposits = rng.uniform(*_CR_ADU, first.size)
        for i, adu in zip(first, deposits, strict=True):
            x, y = px[i], py[i]
            if not (0 <= x < nx and 0 <= y < ny) or taken[y, x]:
                continue
            if image[y, x] + adu >= saturate:
                continue
            image[y, x] += adu
            taken[y, x] = True
            rows.append((int(x), int(y), float(adu)))
    return rows


def _expose(model, rng, *, gain, read_noise, saturate, cosmic_rays) -> dict:
    """Read a noiseless image (ADU) out of a CCD: noise, then defects.

    Noise is Poisson in electrons plus Gaussian read noise; one bad column (a
    long segment of it) reads 0; pixels at ``saturate`` or above are clipped to
    it; cosmic rays are added last, unflagged.
    """
    ny, nx = model.shape
    # The expected variance, from the noiseless model: what an ideal pipeline
    # would estimate, and free of the noise it describes.
    variance = model / gain + (read_noise / gain) ** 2
    image = rng.poisson(gain * model) / gain
    image += rng.normal(0.0, read_noise / gain, model.shape)
    mask = np.zeros(model.shape, np.int32)

    bad_x = int(rng.integers(nx))
    length = int(rng.integers(ny // 2, ny + 1))
    bad_y0 = int(rng.integers(0, ny - length + 1))
    image[bad_y0 : bad_y0 + length, bad_x] = 0.0
    mask[bad_y0 : bad_y0 + length, bad_x] |= 1 << DEFAULT_MASK_BITS["BAD"]
    sat = (image >= saturate) & (mask == 0)
    image[sat] = saturate
    mask[sat] |= 1 << DEFAULT_MASK_BITS["SAT"]

    rays = _cosmic_rays(image, mask, rng, cosmic_rays, saturate)
    return {
        "image": image.astype(np.float32),
        "mask": mask,
        "variance": variance.astype(np.float32),
        "bad": (bad_x, bad_y0, bad_y0 + length),
        "rays": rays,
    }
