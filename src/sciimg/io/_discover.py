"""Finding subjects and exposures: BIDS, HCP and survey folders, or lists of files.

An item that cannot be found cleanly (two files giving it the same id, the same
file reached twice through a link, a symlink loop in its folder) is an error of
that item alone: given an ``errors`` dict, the discovery puts it there under the
item's id and returns the others, so that a run can fail it and go on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sciimg.errors import InputError
from sciimg.io._fits import FITS_SUFFIXES
from sciimg.io._walk import through_link, walk_folder

__all__ = ["Subject", "discover_exposures", "discover_images", "discover_subjects"]


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


def _bids_tree(rel: Path) -> bool:
    return rel.parts[0].startswith("sub-")


def _hcp_tree(rel: Path) -> bool:
    # Only the folders that lead to the series: an HCP subject holds thousands
    # of other files, which discovery has no reason to list.
    return rel.parts[1:] == ("T1w", "Diffusion")[: len(rel.parts) - 1]


def _from_folder(root: Path) -> tuple[list[Subject], list[tuple[Path, str]]]:
    bids = sorted(root.glob("sub-*/dwi/*_dwi.nii*")) + sorted(
        root.glob("sub-*/ses-*/dwi/*_dwi.nii*")
    )
    hcp = [] if bids else sorted(root.glob("*/T1w/Diffusion/data.nii*"))
    # The same folders walked for loops, which glob passes over in silence (a
    # subject folder that is a loop) or which would trap tools that walk them.
    in_tree = _hcp_tree if hcp else _bids_tree
    _, problems = walk_folder(root, keep=lambda _: False, descend=in_tree)
    return [Subject(_id_from_file(p), p) for p in bids or hcp], problems


def _top_folder(path: Path, root: Path) -> str:
    return path.relative_to(root).parts[0]


def _fail(errors: dict[str, InputError], item: str, error: InputError) -> None:
    errors.setdefault(item, error)


def _split_duplicates(
    found: list[tuple[str, Path]], kind: str, errors: dict[str, InputError]
) -> list[tuple[str, Path]]:
    """Items whose id and file are their own; the others go to ``errors``.

    Two different files with one id: neither is processed, because nothing says
    which one is right (a re-conversion beside a stale copy, say) and a silent
    pick could be the wrong one. One file reached under two ids (through a
    symbolic or hard link): the data are the same, so it is processed once,
    under the path without a symlink in it, and the other id fails, saying so;
    processing it twice would count it twice in anything that combines items.
    """
    by_id: dict[str, list[Path]] = {}
    for item, path in found:
        paths = by_id.setdefault(item, [])
        if not any(_same_file(path, p) for p in paths):  # one file listed twice
            paths.append(path)
    unique = []
    for item, paths in by_id.items():
        if len(paths) == 1:
            unique.append((item, paths[0]))
            continue
        others = " and ".join(str(p) for p in paths[1:])
        _fail(
            errors,
            item,
            InputError(
                paths[0],
                f"gives {kind} id {item!r}, as does {others}; neither is "
                "processed: remove or rename all but one",
            ),
        )
    by_file: dict[tuple[int, int] | Path, list[tuple[str, Path]]] = {}
    for item, path in unique:
        by_file.setdefault(_file_key(path), []).append((item, path))
    kept = []
    for items in by_file.values():
        # The path without a symlink in it first, then in id order.
        items.sort(key=lambda it: (through_link(it[1]), it[0]))
        kept.append(items[0])
        for item, path in items[1:]:
            _fail(
                errors,
                item,
                InputError(
                    path,
                    f"is the same file as {items[0][1]} (a link to it); it is "
                    f"processed once, as {kind} {items[0][0]!r}",
                ),
            )
    return sorted(kept)


def _file_key(path: Path) -> tuple[int, int] | Path:
    """Device and inode: the same for every path to one file, links included."""
    try:
        st = path.stat()
    except OSError:  # missing, or a loop: it fails when it is opened
        return path.absolute()
    return (st.st_dev, st.st_ino)


def _same_file(a: Path, b: Path) -> bool:
    return a == b or _file_key(a) == _file_key(b)


def _finish(errors: dict[str, InputError], out: dict[str, InputError] | None) -> None:
    """Hand the problems over, or raise the first (in id order) without ``out``."""
    if out is None:
        if errors:
            raise errors[min(errors)]
        return
    for item in sorted(errors):
        out.setdefault(item, errors[item])


def _subjects_with_loops(
    subjects: list[Subject],
    loops: list[tuple[Path, str]],
    root: Path,
    errors: dict[str, InputError],
) -> list[Subject]:
    """Fail every subject whose folder holds a loop: the folder is damaged (a copy
    or a link gone wrong), and tools that walk it never finish. A loop in a
    subject folder without a series (``sub-03 -> sub-03``) may hide one; it
    fails under the folder's name."""
    bad: set[str] = set()
    for path, why in loops:
        folder = _top_folder(path, root)
        ids = [s.id for s in subjects if _top_folder(s.dwi, root) == folder]
        for item in ids or [folder]:
            _fail(errors, item, InputError(path, why))
            bad.add(item)
    return [s for s in subjects if s.id not in bad]


def discover_subjects(
    source: str | Path | Iterable[str | Path],
    *,
    errors: dict[str, InputError] | None = None,
) -> list[Subject]:
    """The subjects under a BIDS or HCP folder, or one per file of a list.

    Parameters
    ----------
    source : path or list of paths
        A BIDS dataset (``sub-*/dwi/*_dwi.nii.gz`` with ``.bval``/``.bvec``), an HCP
        folder (``<id>/T1w/Diffusion/data.nii.gz`` with ``bvals``/``bvecs``), one
        file, or a list of files.
    errors : dict, optional
        Where to put, under their ids, the subjects that cannot be found cleanly:
        two files giving one id (neither is returned), one file under two ids
        (returned once), a symlink loop in a subject's folder. Without it the
        first such error is raised.

    Returns
    -------
    list of Subject
        Sorted by id; ids are unique.

    Raises
    ------
    InputError
        Nothing found; without ``errors``, a subject that cannot be found cleanly.

    Examples
    --------
    >>> from dipy.data import get_fnames
    >>> [s.id for s in discover_subjects([get_fnames(name="small_64D")[0]])]
    ['small_64D']
    >>> import shutil, tempfile
    >>> copy = Path(tempfile.mkdtemp()) / "small_64D.nii"
    >>> _ = shutil.copy(get_fnames(name="small_64D")[0], copy)
    >>> errors = {}
    >>> discover_subjects([get_fnames(name="small_64D")[0], copy], errors=errors)
    []
    >>> "gives subject id 'small_64D', as does" in str(errors["small_64D"])
    True
    """
    problems: dict[str, InputError] = {}
    if isinstance(source, str | Path):
        root = Path(source)
        if root.is_dir() and not (root / "zarr.json").exists():
            subjects, loops = _from_folder(root)
            subjects = _subjects_with_loops(subjects, loops, root, problems)
            if not subjects and not problems:
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
    found = [(s.id, s.dwi) for s in subjects]
    kept = _split_duplicates(found, "subject", problems)
    _finish(problems, errors)
    return [Subject(item, path) for item, path in kept]


_NIFTI_SUFFIXES = (".nii.gz", ".nii")


def _item_id(path: Path, root: Path | None, suffixes: tuple[str, ...]) -> str:
    name = path.name
    for suffix in suffixes:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    if root is not None:
        parts = path.relative_to(root).parent.parts
        name = "_".join((*parts, name))
    return name


def discover_exposures(
    source: str | Path | Iterable[str | Path],
    *,
    errors: dict[str, InputError] | None = None,
) -> list[tuple[str, Path]]:
    """The FITS exposures under a folder (searched recursively), or of a list.

    Ids come from the path under the folder: ``visit-3/ccd-12.fits`` is
    ``visit-3_ccd-12``; files of a list are named by their stem. Symlinked
    folders are followed.

    Parameters
    ----------
    source : path or list of paths
        A folder, one file, or a list of files.
    errors : dict, optional
        Where to put, under their ids, the exposures that cannot be found cleanly:
        two files giving one id (neither is returned), one file under two ids
        (returned once: co-adding it twice would count it twice), a symlink loop
        (under the id its path would give; it may hide a folder of exposures).
        Without it the first such error is raised.

    Returns
    -------
    list of (id, path)
        Sorted by id; ids are unique.

    Raises
    ------
    InputError
        Nothing found; without ``errors``, an exposure that cannot be found
        cleanly.

    Examples
    --------
    >>> discover_exposures(["a/ccd-1.fits", "b/ccd-2.fits.fz"])
    [('ccd-1', PosixPath('a/ccd-1.fits')), ('ccd-2', PosixPath('b/ccd-2.fits.fz'))]
    >>> errors = {}
    >>> discover_exposures(["a/ccd-1.fits", "b/ccd-1.fits.gz"], errors=errors)
    []
    >>> print(errors["ccd-1"])  # doctest: +NORMALIZE_WHITESPACE
    a/ccd-1.fits: gives exposure id 'ccd-1', as does b/ccd-1.fits.gz; neither is
    processed: remove or rename all but one
    """
    return _discover_files(source, FITS_SUFFIXES, "exposure", "FITS files", errors)


def discover_images(
    source: str | Path | Iterable[str | Path],
    *,
    errors: dict[str, InputError] | None = None,
) -> list[tuple[str, Path]]:
    """The NIfTI and FITS images under a folder (searched recursively), or of a
    list, which may also name Zarr image groups (``out/sub-01.zarr/fa``).

    Ids are made as :func:`discover_exposures` makes them, and the same
    problems go to ``errors``.

    Examples
    --------
    >>> discover_images(["t1/sub-01.nii.gz", "sky/ccd-2.fits", "o/s.zarr/fa"])
    [('ccd-2', PosixPath('sky/ccd-2.fits')), ('fa', PosixPath('o/s.zarr/fa')), \
('sub-01', PosixPath('t1/sub-01.nii.gz'))]
    """
    suffixes = (*_NIFTI_SUFFIXES, *FITS_SUFFIXES)
    return _discover_files(source, suffixes, "image", "NIfTI or FITS files", errors)


def _discover_files(source, suffixes, kind, what, errors):
    def keep(rel: Path) -> bool:
        return rel.name.endswith(suffixes) and not rel.name.startswith(".")

    problems: dict[str, InputError] = {}
    if isinstance(source, str | Path):
        root = Path(source)
        if root.is_dir() and not root.name.endswith(".zarr"):
            files, loops = walk_folder(root, keep=keep)
            found = [(_item_id(p, root, suffixes), p) for p in files]
            for path, why in loops:
                _fail(problems, _item_id(path, root, suffixes), InputError(path, why))
            if not found and not problems:
                raise InputError(root, f"holds no {what} ({', '.join(suffixes)})")
        else:
            found = [(_item_id(root, None, suffixes), root)]
    else:
        found = [(_item_id(Path(p), None, suffixes), Path(p)) for p in source]
        if not found:
            raise InputError("input", "the list of files is empty")
    kept = _split_duplicates(found, kind, problems)
    _finish(problems, errors)
    return [(item, path) for item, path in kept if item not in problems]
