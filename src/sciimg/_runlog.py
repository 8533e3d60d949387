"""The log file of one ``sciimg run``: everything the console does not show.

The console shows sciimg's own lines: progress, one line per item, the summary,
one line per error. Everything else a run produces goes to
``<output>/logs/run-<time>.log``: full tracebacks, Dask's and distributed's
messages, Python warnings, and whatever the local worker processes write (they
inherit the command's standard error, so it is pointed at the log while the run
lasts; sciimg's console keeps the terminal). ``--verbose`` leaves standard error
alone and prints tracebacks on the console as well.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["run_log"]

#: Loggers whose records belong in the log file rather than on the console.
_NOISY = ("distributed", "dask", "dask_jobqueue", "tornado", "asyncio")


def _log_path(output: Path) -> Path:
    """A new log file in ``output/logs``, or in the temporary folder when the
    output cannot be written (the error that follows says so)."""
    name = f"run-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    for folder in (output / "logs", Path(tempfile.gettempdir()) / "sciimg-logs"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / name
            path.touch()
            return path
        except OSError:
            continue
    return Path(os.devnull)


@contextlib.contextmanager
def _stderr_to(path: Path) -> Iterator[None]:
    """Point file descriptor 2 at ``path``; ``sys.stderr`` keeps the terminal."""
    sys.stderr.flush()
    saved = os.dup(2)
    target = os.open(path, os.O_WRONLY | os.O_APPEND)
    console = os.fdopen(os.dup(saved), "w", buffering=1)
    previous = sys.stderr
    os.dup2(target, 2)
    os.close(target)
    sys.stderr = console
    try:
        yield
    finally:
        sys.stderr.flush()
        sys.stderr = previous
        os.dup2(saved, 2)
        os.close(saved)
        console.close()


@contextlib.contextmanager
def run_log(output: Path, *, verbose: bool = False) -> Iterator[Path]:
    """Send the run's logging, warnings and (unless ``verbose``) standard error to
    a new log file; yield its path.

    Examples
    --------
    >>> import logging, tempfile
    >>> from pathlib import Path
    >>> with run_log(Path(tempfile.mkdtemp()), verbose=True) as path:
    ...     logging.getLogger("sciimg").info("hello")
    >>> "hello" in path.read_text()
    True
    """
    path = _log_path(Path(output))
    fmt = logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s")
    # Two handlers on the one file: distributed sets the level of the handlers
    # on its own loggers (LocalCluster's silence_logs), which must not silence
    # sciimg's records too.
    handler, dask_handler = (logging.FileHandler(path, encoding="utf-8") for _ in "ab")
    for h in (handler, dask_handler):
        h.setFormatter(fmt)
    root, sciimg = logging.getLogger(), logging.getLogger("sciimg")
    saved_level = sciimg.level
    sciimg.setLevel(logging.INFO)
    root.addHandler(handler)  # any library's records reach the log, not the console
    # Dask's loggers print on the console through their own handlers and do
    # not propagate: while the run lasts they write to the log instead (to both
    # with --verbose).
    moved: list[tuple[logging.Logger, list[logging.Handler]]] = []
    for name in _NOISY:
        logger = logging.getLogger(name)
        moved.append((logger, list(logger.handlers)))
        if not verbose:
            for h in list(logger.handlers):
                logger.removeHandler(h)
        if not logger.propagate:
            logger.addHandler(dask_handler)
    logging.captureWarnings(True)
    console = logging.StreamHandler(sys.stderr)  # --verbose: tracebacks shown too
    console.setLevel(logging.ERROR)
    if verbose:
        sciimg.addHandler(console)
    redirect = contextlib.nullcontext() if verbose else _stderr_to(path)
    try:
        with redirect:
            yield path
    finally:
        logging.captureWarnings(False)
        for logger, handlers in moved:
            logger.removeHandler(dask_handler)
            for h in handlers:
                if h not in logger.handlers:
                    logger.addHandler(h)
        root.removeHandler(handler)
        sciimg.removeHandler(console)
        sciimg.setLevel(saved_level)
        handler.close()
        dask_handler.close()
