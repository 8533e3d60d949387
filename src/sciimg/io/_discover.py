"""Finding subjects: BIDS and HCP folder layouts, or an explicit list of files."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sciimg.errors import InputError

__all__ = ["Subject", "discover_exposures", "discover_subjects"]


@dataclass(frozen=True)
class Subject:
    """One diffusion series to process.

    Examples
    --------
    >>> Subject("sub-01", Path("sub-01_dwi.nii.gz")).id
    'sub-01'
    """

    id: str
    dwi: Path
    bval: Path | None = None
    bvec: Path | None = None


def _id_from_file(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    if name == "data" and path.parent.name == "Diffusion":  # HCP
        return path.parents[2].name
    return name[: -len("_dwi")] if name.endswith("_dwi") else name


def _from_folder(root: Path) -> list[Subject]:
    bids = sorted(root.glob("sub-*/dwi/*_dwi.nii*")) + sorted(
        root.glob("sub-*/ses-*/dwi/*_dwi.nii*")
    )
    if bids:
        return [Subject(_id_from_file(p), p) for p in bids]
    hcp = sorted(root.glob("*/T1w/Diffusion/data.nii*"))
    return [Subject(_id_from_file(p), p) for p in hcp]


def discover_subjects(source: str | Path | Iterable[str | Path]) -> list[Subject]:
    """The subjects under a BIDS or HCP folder, or one per file of a list.

    Parameters
    ----------
    source : path or list of paths
        A BIDS dataset (``sub-*/dwi/*_dwi.nii.gz`` with ``.bval``/``.bvec``), an HCP
        folder (``<id>/T1w/Diffusion/data.nii.gz`` with ``bvals``/``bvecs``), one
        file, or a list of files.

    Returns
    -------
    list of Subject
        Sorted by id; ids are unique.

    Raises
    ------
    InputError
        Nothing found, or two files would give the same subject id.

    Examples
    --------
    >>> from dipy.data import get_fnames
    >>> [s.id for s in discover_subjects([get_fnames(name="small_64D")[0]])]
    ['small_64D']
    """
    if isinstance(source, str | Path):
        root = Path(source)
        if root.is_dir() and not (root / "zarr.json").exists():
            subjects = _from_folder(root)
            if not subjects:
                raise InputError(
                    root,
                    "holds no subjects (looked for BIDS "
                    "sub-*/dwi/*_dwi.nii[.gz] and HCP "
                    "*/T1w/Diffusion/data.nii[.gz])",
                )
        else:
            subjects = [Subject(_id_from_file(root), root)]
    else:
        subjects = [Subject(_id_from_file(Path(p)), Path(p)) for p in source]
        if not subjects:
            raise InputError("input", "the list of files is empty")
    seen: dict[str, Path] = {}
    for s in subjects:
        if s.id in seen:
            raise InputError(s.dwi, f"gives subject id {s.id!r}, as does {seen[s.id]}")
        seen[s.id] = s.dwi
    return sorted(subjects, key=lambda s: s.id)


_FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fits.fz")


def _exposure_id(path: Path, root: Path | None) -> str:
    name = path.name
    for suffix in _FITS_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    if root is not None:
        parts = path.relative_to(root).parent.parts
        name = "_".join((*parts, name))
    return name


def discover_exposures(
    source: str | Path | Iterable[str | Path],
) -> list[tuple[str, Path]]:
    """The FITS exposures under a folder (searched recursively), or of a list.

    Ids come from the path under the folder: ``visit-3/ccd-12.fits`` is
    ``visit-3_ccd-12``; files of a list are named by their stem.

    Returns
    -------
    list of (id, path)
        Sorted by id; ids are unique.

    Raises
    ------
    InputError
        Nothing found, or two files would get the same id.

    Examples
    --------
    >>> discover_exposures(["a/ccd-1.fits", "b/ccd-2.fits.fz"])
    [('ccd-1', PosixPath('a/ccd-1.fits')), ('ccd-2', PosixPath('b/ccd-2.fits.fz'))]
    """
    if isinstance(source, str | Path):
        root = Path(source)
        if root.is_dir():
            files = sorted(
                p
                for p in root.rglob("*")
                if p.is_file()
                and p.name.endswith(_FITS_SUFFIXES)
                and not p.name.startswith(".")
            )
            if not files:
                raise InputError(
                    root, f"holds no FITS files ({', '.join(_FITS_SUFFIXES)})"
                )
            found = [(_exposure_id(p, root), p) for p in files]
        else:
            found = [(_exposure_id(root, None), root)]
    else:
        found = [(_exposure_id(Path(p), None), Path(p)) for p in source]
        if not found:
            raise InputError("input", "the list of files is empty")
    seen: dict[str, Path] = {}
    for eid, p in found:
        if eid in seen:
            raise InputError(p, f"gives exposure id {eid!r}, as does {seen[eid]}")
        seen[eid] = p
    return sorted(found)
