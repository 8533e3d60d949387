"""Write under a temporary name, rename when complete: what exists is whole."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "remove", "replace_path", "temporary_sibling"]


def temporary_sibling(path: Path, suffix: str = "") -> Path:
    """A hidden name in the same folder (same filesystem, so rename is atomic).

    A run sweeps such names (``.<name>.tmp-*``) from its output folder when it
    starts: what a run that died left there.

    Examples
    --------
    >>> from pathlib import Path
    >>> temporary_sibling(Path("out/sub-01.zarr")).name.startswith(".sub-01.zarr.tmp-")
    True
    """
    return path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}{suffix}")


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def replace_path(tmp: Path, final: Path) -> None:
    """Move ``tmp`` to ``final``, replacing what was there (files or folders)."""
    if final.is_dir() and not final.is_symlink():
        old = temporary_sibling(final, ".old")
        os.replace(final, old)  # a folder cannot be renamed over a non-empty one
        os.replace(tmp, final)
        remove(old)
    else:
        os.replace(tmp, final)


@contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path to write; rename it to ``path`` only on success.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "x.txt"
    >>> with atomic_path(out) as tmp:
    ...     _ = tmp.write_text("done")
    >>> out.read_text()
    'done'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path, suffix)
    try:
        yield tmp
    except BaseException:
        remove(tmp)
        raise
    replace_path(tmp, path)
