"""Diffusion gradient tables: finding, reading and checking ``bval``/``bvec`` files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sciimg.errors import InputError

__all__ = ["find_gradient_files", "image_stem", "make_gtab", "read_gradients"]

#: A largest b-value below this (s/mm²) is no diffusion protocol in s/mm²: even
#: IVIM, which samples the smallest weightings, goes up to b ≈ 800-1000. It is a
#: table in ms/µm² (1 ms/µm² = 1000 s/mm²; typical 1-3, ex vivo up to ~40).
MIN_LARGEST_BVALUE = 50.0

#: dipy's own limits, kept so that every table passing here also passes dipy:
#: volumes with b above ``B0_THRESHOLD`` need vectors of length 1 ± ``UNIT_TOL``
#: (volumes at or below it are b0s, whose vectors may be zero).
B0_THRESHOLD = 50.0
UNIT_TOL = 0.01


def image_stem(path: str | Path) -> str:
    """A file name without its image suffix (``.nii.gz`` counts as one).

    Examples
    --------
    >>> image_stem("sub-01_dwi.nii.gz")
    'sub-01_dwi'
    """
    path = Path(path)
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def find_gradient_files(dwi: str | Path) -> tuple[Path, Path] | None:
    """The ``bval``/``bvec`` files beside a diffusion series, if there are any.

    Looks for BIDS/FSL siblings (``x.nii.gz`` → ``x.bval``, ``x.bvec``) and then for
    the HCP names ``bvals``/``bvecs`` in the same folder.

    Examples
    --------
    >>> find_gradient_files("/nonexistent/sub-01_dwi.nii.gz") is None
    True
    """
    dwi = Path(dwi)
    stem = image_stem(dwi)
    for bval, bvec in (
        (dwi.with_name(stem + ".bval"), dwi.with_name(stem + ".bvec")),
        (dwi.with_name("bvals"), dwi.with_name("bvecs")),
    ):
        if bval.is_file() and bvec.is_file():
            return bval, bvec
    return None


def make_gtab(
    bvals: np.ndarray, bvecs: np.ndarray, *, source: str | Path = "gradients"
):
    """A dipy ``GradientTable``, with dipy's complaints turned into one-line errors.

    Examples
    --------
    >>> import numpy as np
    >>> gtab = make_gtab(np.array([0.0, 1000.0]), np.array([[0, 0, 0], [1.0, 0, 0]]))
    >>> gtab.bvals.tolist()
    [0.0, 1000.0]
    """
    from dipy.core.gradients import gradient_table

    try:
        return gradient_table(np.asarray(bvals, float), bvecs=np.asarray(bvecs, float))
    except ValueError as exc:
        raise InputError(source, f"invalid gradient table: {exc}") from exc


def read_gradients(
    bval: str | Path,
    bvec: str | Path,
    *,
    n_volumes: int | None = None,
    image: str | Path | None = None,
):
    """Read ``bval``/``bvec`` files into a dipy ``GradientTable`` and check them.

    Parameters
    ----------
    bval, bvec : str or Path
        FSL-style text files (one row of b-values; three rows of unit vectors).
    n_volumes : int, optional
        Volumes in the diffusion series; the files must list exactly that many.
    image : str or Path, optional
        The series the table belongs to, named in mismatch errors.

    Raises
    ------
    InputError
        A file is unreadable, malformed, or does not match ``n_volumes``; the
        largest b-value is below :data:`MIN_LARGEST_BVALUE` (a table in ms/µm²);
        a diffusion-weighted volume's vector is not unit length (the volume is
        named).

    Examples
    --------
    >>> from dipy.data import get_fnames
    >>> _, fbval, fbvec = get_fnames(name="small_64D")
    >>> read_gradients(fbval, fbvec, n_volumes=65).bvals.shape
    (65,)
    """
    from dipy.io.gradients import read_bvals_bvecs

    bval, bvec = Path(bval), Path(bvec)
    try:
        bvals, bvecs = read_bvals_bvecs(str(bval), str(bvec))
    except (OSError, ValueError) as exc:
        raise InputError(
            bval, f"cannot read gradient files with {bvec.name}: {exc}"
        ) from exc
    if bvals is None or bvecs is None or bvals.ndim != 1 or bvecs.shape[-1] != 3:
        raise InputError(bval, "malformed b-values/b-vectors")
    if len(bvals) != len(bvecs):
        raise InputError(
            bvec, f"has {len(bvecs)} vectors but {bval.name} has {len(bvals)} b-values"
        )
    if n_volumes is not None and len(bvals) != n_volumes:
        where = Path(image).name if image is not None else "the image"
        raise InputError(
            bval, f"lists {len(bvals)} b-values but {where} has {n_volumes} volumes"
        )
    if not np.all(np.isfinite(bvals)):
        raise InputError(bval, "b-values contain NaN or infinity")
    _check_unit(bvals, bval)
    _check_vectors(bvals, bvecs, bvec)
    return make_gtab(bvals, bvecs, source=bvec)


def _check_unit(bvals: np.ndarray, source: Path) -> None:
    """A table in ms/µm² would pass every other check and give diffusivities
    1000 times too large: its largest b-value is what gives it away."""
    largest = float(bvals.max(initial=0.0))
    if 0 < largest < MIN_LARGEST_BVALUE:
        raise InputError(
            source,
            f"largest b-value is {largest:g}, below {MIN_LARGEST_BVALUE:g}: the "
            "values look like ms/µm², but this file must give s/mm² (1 ms/µm² "
            "= 1000 s/mm²)",
        )


def _check_vectors(bvals: np.ndarray, bvecs: np.ndarray, source: Path) -> None:
    """Vectors of diffusion-weighted volumes must be unit length; said per volume,
    where dipy only says that some vector is not."""
    # Scanners write NaN vectors for b0 volumes; dipy zeroes them.
    norms = np.linalg.norm(np.nan_to_num(bvecs, nan=0.0), axis=1)
    off = np.flatnonzero((bvals > B0_THRESHOLD) & (np.abs(norms - 1) > UNIT_TOL))
    if off.size:
        i = int(off[0])
        also = f" (and {off.size - 1} more)" if off.size > 1 else ""
        raise InputError(
            source,
            f"the b-vector of volume {i} (counting from 0; b={bvals[i]:g}) has "
            f"length {norms[i]:.3g}, not 1 ± {UNIT_TOL:g}{also}; vectors of "
            "diffusion-weighted volumes must be unit length",
        )
