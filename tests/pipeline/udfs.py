"""User-defined steps, importable by workers, for the runner tests."""

import numpy as np


def white_matter(fa, mask, *, threshold=0.3):
    """A step of one's own: voxels of high anisotropy inside the brain."""
    return (fa > threshold) & mask


def two_maps(mean_b0, *, scale=2.0):
    return {"scaled": mean_b0 * scale, "log_b0": np.log1p(mean_b0)}


def not_an_image(mean_b0):
    return mean_b0.sum()


def explode(mean_b0):
    """A step that fails on its worker, for the diagnosis tests."""

    def fail(block):
        if block.size:
            raise ValueError("negative signal in this block")
        return block

    return mean_b0.map_blocks(fail, dtype=mean_b0.dtype)


def crash_worker(mean_b0):
    """A step whose worker process dies, as one killed for memory would."""

    def die(block):
        import os

        if block.size:  # not while dask infers the result's type, in this process
            os._exit(1)
        return block

    return mean_b0.map_blocks(die, dtype=mean_b0.dtype)
