"""An output folder while a run writes it: created, checked, held, and left
clean whatever way the run ends."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from sciimg.errors import OutputError
from sciimg.pipeline._jobs import ItemResult, Job
from sciimg.pipeline.lock import OutputLock
from sciimg.pipeline.records import sweep_temporaries

__all__ = ["hold_output", "mark_interrupted"]


@contextlib.contextmanager
def hold_output(output: Path) -> Iterator[Path]:
    """Create the output folder, check it can be written, and hold it: no other
    run may write it until the block ends.

    What an earlier run left under temporary names is removed once the folder
    is held: no other run can be writing it then.

    Raises
    ------
    OutputError
        The folder cannot be created or written, named with the reason.
    OutputBusyError
        Another run holds it.
    """
    output = Path(output)
    try:
        output.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=output, prefix=".write-test-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise OutputError(output, f"cannot write there ({reason})") from exc
    with OutputLock(output):
        sweep_temporaries(output)
        yield output


def mark_interrupted(
    output: Path,
    jobs: list[Job],
    results: dict[str, ItemResult],
    items: list[tuple[str, str]],
) -> None:
    """After Ctrl-C: remove the unfinished stores and mark every item that has no
    result yet as ``interrupted``. Call it once the cluster has stopped, so that
    no worker writes into a store after it is removed."""
    for job in jobs:
        if job.id not in results:
            job.writer.abort()
    # A store whose graph was being built when Ctrl-C came has no job yet.
    sweep_temporaries(output)
    for item, kind in items:
        results.setdefault(item, ItemResult(item, "interrupted", kind=kind))
