"""Walking input folders: symlinked folders followed, loops named and never walked."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["through_link", "walk_folder"]


def _always(_: Path) -> bool:
    return True


def walk_folder(
    root: Path,
    *,
    keep: Callable[[Path], bool],
    descend: Callable[[Path], bool] = _always,
) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The files under ``root`` that ``keep`` accepts, and what could not be walked.

    Symlinked folders are followed, as data on another disk is often linked in.
    A symlink that leads back to a folder above it (``loop -> ..``) or to itself
    through other links would make the walk endless: it is not followed, and is
    returned as a problem instead, as is a folder that cannot be listed.

    Parameters
    ----------
    root : Path
        The folder to walk.
    keep : callable
        Given a file's path relative to ``root``; True to return it.
    descend : callable
        Given a folder's path relative to ``root``; True to walk into it. Loops
        and unreadable folders are only reported where the walk would go.

    Returns
    -------
    files : list of Path
        Sorted; paths under ``root`` as walked (through the symlinks).
    problems : list of (Path, str)
        Each symlink loop or unreadable folder, with what is wrong, one line.

    Examples
    --------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> (root / "a").mkdir(); (root / "a" / "x.fits").touch()
    >>> (root / "a" / "loop").symlink_to("..")
    >>> files, problems = walk_folder(root, keep=lambda p: p.suffix == ".fits")
    >>> [str(f.relative_to(root)) for f in files]
    ['a/x.fits']
    >>> [(str(p.relative_to(root)), why[:26]) for p, why in problems]
    [('a/loop', 'is a symlink loop: it lead')]
    """
    root = Path(root)
    files: list[Path] = []
    problems: list[tuple[Path, str]] = []
    top = os.stat(root)
    # The folders on the way down, by device and inode: a link to one of them is
    # a loop (the walk would come back to it forever).
    _walk(root, root, {(top.st_dev, top.st_ino): root}, keep, descend, files, problems)
    return sorted(files), _once(problems)


def _once(problems: list[tuple[Path, str]]) -> list[tuple[Path, str]]:
    """Each link once: one reached again through another link (``latest ->
    visit-3``) is named by the path without links, or the first."""
    by_link: dict = {}
    for path, why in problems:
        try:
            st = os.lstat(path)
            key = (st.st_dev, st.st_ino)
        except OSError:
            key = path
        by_link.setdefault(key, []).append((path, why))
    return sorted(
        min(found, key=lambda p: (through_link(p[0].parent), p[0]))
        for found in by_link.values()
    )


def through_link(path: Path) -> bool:
    """Whether the path goes through a symlink (or cannot be resolved)."""
    try:
        return path.resolve(strict=True) != path.absolute()
    except (OSError, RuntimeError):
        return True


def _walk(folder, root, above, keep, descend, files, problems) -> None:
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        problems.append((folder, f"cannot be listed ({exc.strerror or exc})"))
        return
    for entry in entries:
        path = folder / entry.name
        rel = path.relative_to(root)
        try:
            is_dir = entry.is_dir()
        except OSError as exc:
            if exc.errno == errno.ELOOP and descend(rel):
                problems.append(
                    (path, "is a symlink loop: it leads back to itself through links")
                )
            continue
        if not is_dir:
            if keep(rel):
                files.append(path)
            continue
        if not descend(rel):
            continue
        st = entry.stat()  # of the target, for a symlink
        key = (st.st_dev, st.st_ino)
        if key in above:
            problems.append(
                (path, f"is a symlink loop: it leads back to {above[key]}, above it")
            )
            continue
        _walk(path, root, {**above, key: path}, keep, descend, files, problems)
