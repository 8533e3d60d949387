"""A diffusion-MRI head phantom with known tissues, fibre bundles and tensors."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sciimg.synth._folder import check_output_folder

__all__ = ["LABELS", "NeuroPhantom", "make_neuro_phantom", "write_neuro_dataset"]

_SUBJECT = re.compile(r"sub-\d+")

#: Labels of the phantom: tissues, and white matter split by fibre orientation so
#: that each label is a region of one noiseless signal.
LABELS = {
    0: "background",
    1: "csf",
    2: "grey matter",
    3: "white matter (z)",
    4: "white matter crossing (x and y)",
    5: "white matter bundle (x)",
    6: "white matter bundle (y)",
}

# Diffusivities (mm²/s) and b0 signal per tissue, typical of adult brain at 3 T.
_CSF = (np.array([[3.0e-3, 3.0e-3, 3.0e-3]]), 1.0, [(0, 0)], [100.0])
_GM = (np.array([[0.9e-3, 0.75e-3, 0.7e-3]]), 0.75, [(0, 0)], [100.0])
_WM_EVALS = np.array([1.7e-3, 0.3e-3, 0.3e-3])
_WM_S0 = 0.6
_X, _Y, _Z = (90, 0), (90, 90), (0, 0)  # (theta, phi) in degrees


@dataclass
class NeuroPhantom:
    """One synthetic subject: noisy series, gradients and ground truth."""

    data: np.ndarray  # (x, y, z, volume) float32
    gtab: object  # dipy GradientTable
    affine: np.ndarray
    labels: np.ndarray  # (x, y, z) uint8, see LABELS
    fa: np.ndarray  # (x, y, z) truth: DTI of the noiseless signal
    md: np.ndarray
    sigma: float  # Rician noise level


def _classes(gtab):
    """Noiseless signal (per unit S0) of each tissue class, and its DTI truth."""
    from dipy.reconst.dti import TensorModel
    from dipy.sims.voxel import multi_tensor

    wm = np.array([_WM_EVALS])
    spec = {
        1: _CSF,
        2: _GM,
        "wm_x": (wm, _WM_S0, [_X], [100.0]),
        "wm_y": (wm, _WM_S0, [_Y], [100.0]),
        "wm_z": (wm, _WM_S0, [_Z], [100.0]),
        4: (np.vstack([wm, wm]), _WM_S0, [_X, _Y], [50.0, 50.0]),
    }
    signals = {}
    for key, (mevals, s0, angles, fractions) in spec.items():
        sig, _ = multi_tensor(
            gtab, mevals, S0=s0, angles=angles, fractions=fractions, snr=None
        )
        signals[key] = sig
    fit = TensorModel(gtab).fit(np.array(list(signals.values())))
    truth = {k: (float(fit.fa[i]), float(fit.md[i])) for i, k in enumerate(signals)}
    return signals, truth


def make_neuro_phantom(
    shape=(32, 32, 20),
    *,
    gtab=None,
    snr: float = 20.0,
    voxel_size: float = 2.0,
    seed: int = 0,
    s0: float = 1000.0,
) -> NeuroPhantom:
    """Build one head phantom.

    An ellipsoidal head: a CSF rim and ventricles, a grey-matter ribbon, and white
    matter in three bundles along x, y and z, two of which cross. Signals come from
    ``dipy.sims.voxel.multi_tensor``; Rician noise has ``sigma = s0 * 0.6 / snr``
    (SNR of white matter in b0 volumes).

    Parameters
    ----------
    shape : tuple of int
        Volume shape ``(x, y, z)``.
    gtab : dipy GradientTable, optional
        Default :func:`~sciimg.synth.multishell_gtab`.
    snr : float
        b0 signal-to-noise ratio in white matter.
    voxel_size : float
        Isotropic voxel size, mm.
    seed : int
        Seed for noise and the small per-subject variation of the head's size.
    s0 : float
        b0 signal of CSF.

    Examples
    --------
    >>> from sciimg.synth import multishell_gtab
    >>> ph = make_neuro_phantom((16, 16, 10), gtab=multishell_gtab(directions=6))
    >>> ph.data.shape, sorted(set(ph.labels.ravel().tolist()))
    ((16, 16, 10, 21), [0, 1, 2, 3, 4, 5, 6])
    """
    from sciimg.synth._gradients import multishell_gtab

    gtab = gtab if gtab is not None else multishell_gtab()
    rng = np.random.default_rng(seed)
    shape = tuple(int(n) for n in shape)
    # Normalised coordinates in [-1, 1] over the field of view.
    grid = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    radii = np.array([0.92, 0.94, 0.90]) * rng.uniform(0.96, 1.02, 3)
    r = np.sqrt(sum((g / a) ** 2 for g, a in zip(grid, radii, strict=True)))
    x, y, z = grid

    labels = np.zeros(shape, np.uint8)
    labels[r <= 1.0] = 1  # CSF rim
    labels[r <= 0.88] = 2  # grey-matter ribbon
    labels[r <= 0.68] = 3  # white matter
    ventricles = ((x / 0.12) ** 2 + (y / 0.3) ** 2 + (z / 0.2) ** 2) <= 1.0
    labels[ventricles & (r <= 0.68)] = 1

    wm = labels == 3
    band_x = wm & (np.abs(y - 0.35) < 0.16)  # bundle along x
    band_y = wm & (np.abs(x + 0.35) < 0.16)  # bundle along y
    crossing = band_x & band_y
    labels[band_x] = 5
    labels[band_y] = 6
    labels[crossing] = 4

    signals, truth = _classes(gtab)
    fa = np.zeros(shape, np.float32)
    md = np.zeros(shape, np.float32)
    regions = {
        1: labels == 1,
        2: labels == 2,
        "wm_x": band_x & ~crossing,
        "wm_y": band_y & ~crossing,
        "wm_z": wm & ~band_x & ~band_y,
        4: crossing,
    }
    for key, where in regions.items():
        fa[where], md[where] = truth[key]
    sigma = s0 * _WM_S0 / snr
    noisy = _rician(shape, regions, signals, s0, sigma, len(gtab.bvals), rng)
    affine = np.diag([voxel_size] * 3 + [1.0])
    affine[:3, 3] = -voxel_size * (np.array(shape) - 1) / 2  # centred on the origin
    return NeuroPhantom(noisy, gtab, affine, labels, fa, md, float(sigma))


#: Float64 values per slab of :func:`_rician`'s temporaries (64 MiB).
_SLAB_VALUES = 1 << 23


def _rician(shape, regions, signals, s0, sigma, n_volumes, rng) -> np.ndarray:
    """``sqrt((clean + n1)² + n2²)`` as float32, slab by slab along x.

    The noise is drawn in the order of one whole-array draw each of n1 then n2
    (x slabs are contiguous in C order), so a phantom does not depend on the slab
    size; only float32 results are kept whole, so an HCP-size series (4.2 GB as
    float32) needs no float64 copies of itself (25 GB).
    """
    out = np.empty((*shape, n_volumes), np.float32)
    side = max(1, _SLAB_VALUES // max(1, int(np.prod(shape[1:])) * n_volumes))
    slabs = [slice(x, x + side) for x in range(0, shape[0], side)]
    for s in slabs:
        clean = np.zeros(out[s].shape, np.float64)
        for key, where in regions.items():
            clean[where[s]] = signals[key] * s0
        out[s] = (clean + rng.normal(0, sigma, clean.shape)) ** 2
    for s in slabs:
        square = out[s].astype(np.float64) + rng.normal(0, sigma, out[s].shape) ** 2
        out[s] = np.sqrt(square)
    return out


def write_neuro_dataset(
    out: str | Path,
    *,
    subjects: int = 2,
    shape=(32, 32, 20),
    seed: int = 0,
    snr: float = 20.0,
    hcp: bool = False,
    directions: int | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Write phantom subjects as a BIDS dataset, with ground truth beside it.

    Layout::

        OUT/dataset_description.json
        OUT/sub-01/dwi/sub-01_dwi.nii.gz  (.bval, .bvec)
        OUT/derivatives/truth/sub-01/sub-01_{labels,fa,md}.nii.gz

    Parameters
    ----------
    out : str or Path
        Dataset folder; created, and it must be empty unless ``overwrite``.
    subjects : int
        Number of subjects; subject ``i`` uses seed ``seed + i``.
    shape : tuple of int
        Volume shape (``hcp`` with the default shape gives 145×174×145).
    seed : int
        Base seed.
    snr : float
        White-matter b0 SNR.
    hcp : bool
        The HCP scheme: 90 directions on each of b = 1000, 2000, 3000 and a b0
        before every 16 weighted volumes, 17 in all (287 volumes; the HCP's own
        series has 18 b0, 288 volumes), 1.25 mm voxels. Default: 10 directions
        per shell.
    directions : int, optional
        Directions per shell, overriding the above.
    overwrite : bool
        Write into a non-empty ``out``, replacing files and removing subjects
        of an earlier dataset that this one does not have.

    Returns
    -------
    list of Path
        The diffusion series written.

    Raises
    ------
    FolderNotEmptyError
        ``out`` holds files and ``overwrite`` is false.

    Examples
    --------
    >>> import tempfile
    >>> paths = write_neuro_dataset(tempfile.mkdtemp(), subjects=1, shape=(12, 12, 8))
    >>> paths[0].name
    'sub-01_dwi.nii.gz'
    """
    import nibabel as nib

    from sciimg.synth._gradients import multishell_gtab

    out = Path(out)
    check_output_folder(out, overwrite)
    if hcp and tuple(shape) == (32, 32, 20):
        shape = (145, 174, 145)
    ndir = directions or (90 if hcp else 10)
    gtab = multishell_gtab(directions=ndir, b0_every=16 if hcp else 8, seed=seed)
    voxel = 1.25 if hcp else 2.0
    out.mkdir(parents=True, exist_ok=True)
    (out / "dataset_description.json").write_text(
        json.dumps(
            {
                "Name": "sciimg diffusion phantom",
                "BIDSVersion": "1.9.0",
                "DatasetType": "raw",
                "GeneratedBy": [{"Name": "sciimg synth neuro"}],
            },
            indent=2,
        )
    )
    written = []
    for i in range(subjects):
        sub = f"sub-{i + 1:02d}"
        ph = make_neuro_phantom(
            shape, gtab=gtab, snr=snr, voxel_size=voxel, seed=seed + i
        )
        dwi_dir = out / sub / "dwi"
        dwi_dir.mkdir(parents=True, exist_ok=True)
        dwi = dwi_dir / f"{sub}_dwi.nii.gz"
        img = nib.Nifti1Image(ph.data, ph.affine)
        img.header.set_xyzt_units("mm", "sec")
        nib.save(img, dwi)
        np.savetxt(dwi_dir / f"{sub}_dwi.bval", gtab.bvals[None], fmt="%g")
        np.savetxt(dwi_dir / f"{sub}_dwi.bvec", gtab.bvecs.T, fmt="%.8f")
        truth = out / "derivatives" / "truth" / sub
        truth.mkdir(parents=True, exist_ok=True)
        for name, arr in (("labels", ph.labels), ("fa", ph.fa), ("md", ph.md)):
            nib.save(nib.Nifti1Image(arr, ph.affine), truth / f"{sub}_{name}.nii.gz")
        (truth / f"{sub}_noise.json").write_text(
            json.dumps({"sigma": ph.sigma, "snr": snr, "labels": LABELS}, indent=2)
        )
        written.append(dwi)
    _remove_stale(out, {p.parent.parent.name for p in written})
    return written


def _remove_stale(out: Path, kept: set[str]) -> None:
    """Drop subjects of an earlier dataset that this one did not rewrite."""
    for folder in (out, out / "derivatives" / "truth"):
        for sub in sorted(folder.glob("sub-*")):
            if _SUBJECT.fullmatch(sub.name) and sub.is_dir() and sub.name not in kept:
                shutil.rmtree(sub)
