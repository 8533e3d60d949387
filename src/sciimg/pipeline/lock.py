"""One run at a time per output folder: a lock file that names its holder.

Two runs writing one folder corrupt it silently: the second's start-up clean-up
removes the first's unfinished stores while the first's workers still write
into them. A run therefore takes ``<output>/.sciimg/lock`` before it touches
anything there, and a second run refuses at once, naming the holder.

The lock is a file created with ``O_CREAT | O_EXCL``, which is atomic on local
file systems and on NFS (v3 and later), holding the host, process id, process
start time and a random token. A lock is stale, and taken over, when its holder
is gone: on the same host, when no process with that id and start time runs; on
another host (a shared folder), when the holder has not refreshed the file's
modification time for ``stale_after`` seconds (the holder refreshes it every
``heartbeat`` seconds from a thread).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sciimg.errors import OutputError

__all__ = ["OutputBusyError", "OutputLock"]


class OutputBusyError(OutputError):
    """Another run holds the output folder.

    Examples
    --------
    >>> str(OutputBusyError("out/neuro", "in use by another run"))
    'out/neuro: in use by another run'
    """


def _process_start(pid: int) -> float | None:
    """When process ``pid`` started (None if there is no such process)."""
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


class OutputLock:
    """The exclusive right to write an output folder, as a context manager.

    Parameters
    ----------
    output : Path
        The folder; the lock is ``output/.sciimg/lock``.
    stale_after : float
        Seconds without a refresh after which a lock held from another host is
        taken to be left by a run that died.
    heartbeat : float
        Seconds between refreshes of the lock by its holder.

    Raises
    ------
    OutputBusyError
        On entry, when a live run holds the folder.

    Examples
    --------
    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp())
    >>> with OutputLock(out):
    ...     with OutputLock(out):
    ...         pass
    Traceback (most recent call last):
    ...
    sciimg.pipeline.lock.OutputBusyError: ...: in use by another sciimg run (pid ...
    """

    def __init__(
        self, output: Path, *, stale_after: float = 300.0, heartbeat: float = 30.0
    ) -> None:
        self.output = Path(output)
        self.path = self.output / ".sciimg" / "lock"
        self.stale_after = stale_after
        self.heartbeat = heartbeat
        self.token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- taking and giving back ------------------------------------------------

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "process_start": _process_start(os.getpid()),
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "token": self.token,
        }
        for _ in range(3):  # a stale lock is removed, then taken
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is not None and not self._stale(holder):
                    raise OutputBusyError(self.output, self._describe(holder)) from None
                self._remove_if(holder)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            if (self._holder() or {}).get("token") != self.token:
                continue  # another run took it over at the same moment
            self._thread = threading.Thread(
                target=self._refresh, name="sciimg-lock", daemon=True
            )
            self._thread.start()
            return
        holder = self._holder() or {}
        raise OutputBusyError(self.output, self._describe(holder))

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if (self._holder() or {}).get("token") == self.token:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    # -- what is in the lock file ----------------------------------------------

    def _holder(self) -> dict[str, Any] | None:
        """The holder's record; ``{}`` when the file is unreadable (being
        written, or damaged), None when there is no lock."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        except OSError:
            return {}
        try:
            holder = json.loads(text)
        except ValueError:
            return {}
        return holder if isinstance(holder, dict) else {}

    def _stale(self, holder: dict[str, Any]) -> bool:
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return True
        if holder.get("host") == socket.gethostname() and "pid" in holder:
            started = _process_start(int(holder["pid"]))
            # The same id may belong to a later process: compare start times.
            recorded = holder.get("process_start")
            if started is None:
                return True
            return recorded is not None and abs(started - recorded) > 1.0
        # Another host's process cannot be asked: its refreshes say it lives.
        return age > self.stale_after

    def _remove_if(self, holder: dict[str, Any] | None) -> None:
        """Remove the lock judged stale, unless it changed since it was read."""
        if holder is None:
            return
        current = self._holder()
        if current is not None and current.get("token") == holder.get("token"):
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def _describe(self, holder: dict[str, Any]) -> str:
        who = (
            f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, "
            f"since {holder.get('started', '?')}"
        )
        return (
            f"in use by another sciimg run ({who}); wait for it to end, or, if "
            f"that run is gone, remove {self.path}"
        )

    def _refresh(self) -> None:
        while not self._stop.wait(self.heartbeat):
            with contextlib.suppress(OSError):
                os.utime(self.path)
