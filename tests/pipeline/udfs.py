"""User-defined steps, importable by workers, for the runner tests."""

import numpy as np


def white_matter(fa, mask, *, threshold=0.3):
    """A step of one's own: voxels of high anisotropy inside the brain."""
    return (fa > threshold) & mask


def two_maps(mean_b0, *, scale=2.0):
    return {"scaled": mean_b0 * scale, "log_b0": np.log1p(mean_b0)}


def unring(dwi):
    """A step that replaces the pipeline's ``dwi`` with its own."""
    return dwi * 1.0


def needs_b(b):
    return b


def needs_x(x):
    return x


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


def nap(mean_b0, *, seconds=5.0, started=None):
    """A step whose tasks take ``seconds`` each; with ``started``, a folder, each
    leaves a file there as it starts, for tests that act while it runs."""

    def slow(block):
        import tempfile
        import time

        if block.size:
            if started:
                tempfile.NamedTemporaryFile(dir=started, delete=False).close()
            time.sleep(seconds)
        return block

    return mean_b0.map_blocks(slow, dtype=mean_b0.dtype)


def hog_memory(mean_b0, subject, *, share=1.2, only=None, seconds=3.0):
    """A step whose task computes for ``seconds``, then takes its worker over its
    memory limit (``share`` of it) and holds the memory until the worker's nanny
    restarts it; with ``only``, for that subject alone."""

    def eat(block):
        import time

        from distributed import get_worker

        if block.size and only in (None, subject):
            time.sleep(seconds)
            limit = get_worker().memory_manager.memory_limit
            held = np.ones(int(share * limit) // 8)
            time.sleep(5)  # the nanny looks every 100 ms
            del held
        return block

    return mean_b0.map_blocks(eat, dtype=mean_b0.dtype)


_KEPT: list = []


def keep_memory(mean_b0, *, share=0.87):
    """A step that leaves its worker at ``share`` of its memory limit, above the
    pause fraction and below the terminate one, in memory Dask does not manage
    and cannot spill: the worker pauses and never resumes."""

    def keep(block):
        if block.size:
            import time

            import psutil
            from distributed import get_worker

            limit = get_worker().memory_manager.memory_limit
            need = int(share * limit) - psutil.Process().memory_info().rss
            # Some even when the worker is above the share for a moment (data
            # on its way out): keeping none, it would resume once that is gone.
            need = max(need, limit // 10)
            _KEPT.append(np.ones(need // 8))
            # Long enough for the worker's memory monitor (every 0.1 s) to pause
            # it before the task ends: else the item's writes may run first.
            time.sleep(0.5)
        return block

    return mean_b0.map_blocks(keep, dtype=mean_b0.dtype)


def above(gaussian, *, level=0.5):
    """A step of one's own for the images pipeline: where the smoothed image is
    above ``level``."""
    return gaussian > level
